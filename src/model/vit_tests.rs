//! The ViT backbones against PyTorch: tiny random `transformers` models and their outputs
//! (`tests/fixtures/vit/`, made by `make_fixtures.py` there), the bicubic resize against
//! `F.interpolate`, freezing, errors, and the real configurations' names and sizes.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use super::bicubic::resize_grid;
use super::test_support::{flat, seeded, var};
use super::*;
use crate::vocab::{Fusion, Pooling, VitConfig, VitFamily, architecture};

/// The fixtures' models: hidden 16, 2 layers, 4 heads, MLP 32, patch 4, image 16.
fn tiny(family: VitFamily) -> VitConfig {
    VitConfig {
        family,
        hidden: 16,
        layers: 2,
        heads: 4,
        mlp: 32,
        patch: 4,
        image: 16,
    }
}

const FAMILIES: [VitFamily; 2] = [VitFamily::Clip, VitFamily::Dinov2];

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vit")
        .join(name);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> HashMap<String, Tensor> {
    fixture("expected.safetensors")
}

/// Loads a fixture's weights file into `varmap` (the backbone's vars, no prefix): strips
/// `vision_model.`, skips DINOv2's `mask_token`; every var must be in the file.
fn load(varmap: &VarMap, family: VitFamily) {
    let file = fixture(&format!("{}_tiny.safetensors", family.name()));
    let vars = varmap.data().lock().unwrap();
    let mut loaded = BTreeSet::new();
    for (name, t) in &file {
        let rel = name.strip_prefix("vision_model.").unwrap_or(name);
        if rel == "embeddings.mask_token" {
            continue;
        }
        let v = vars
            .get(rel)
            .unwrap_or_else(|| panic!("the file's `{name}` is no var"));
        v.set(t).unwrap_or_else(|e| panic!("{name}: {e}"));
        loaded.insert(rel.to_string());
    }
    let all: BTreeSet<String> = vars.keys().cloned().collect();
    assert_eq!(loaded, all, "every var loaded");
}

/// The tiny `family` model with the fixture's weights.
fn build(family: VitFamily, pooling: Pooling, kernels: Kernels) -> (VarMap, Vit) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let vit = Vit::new("tiny", &tiny(family), pooling, kernels, vb).unwrap();
    load(&varmap, family);
    (varmap, vit)
}

/// The fixture's images at `side` (16 native, 24 and 12 interpolated): centre crops of one
/// `[2, 3, 24, 24]` batch.
fn pixels(side: usize) -> Tensor {
    let offset = (24 - side) / 2;
    expected()["pixels"]
        .narrow(2, offset, side)
        .and_then(|t| t.narrow(3, offset, side))
        .unwrap()
}

fn pooling_name(p: Pooling) -> &'static str {
    match p {
        Pooling::Cls => "cls",
        Pooling::Mean => "mean",
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    flat::<f32>(a)
        .iter()
        .zip(flat::<f32>(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest |candle − torch| over all pooled outputs; the test bound is 1e-4.
const POOLED_TOLERANCE: f32 = 1e-4;

#[test]
fn tiny_vits_match_transformers_at_native_and_interpolated_sizes() {
    let expected = expected();
    let mut worst = 0f32;
    for family in FAMILIES {
        for pooling in [Pooling::Cls, Pooling::Mean] {
            // Frozen (forward-only kernels), partly and fully trainable (differentiable ops).
            for (kernels, trainable) in [
                (Kernels::Fast, 0),
                (Kernels::Fast, 1),
                (Kernels::Fast, 3),
                (Kernels::Reference, 0),
            ] {
                let (_, vit) = build(family, pooling, kernels);
                for side in [16, 24, 12] {
                    let key = format!("{}.{}.{side}", family.name(), pooling_name(pooling));
                    let got = vit.forward(&pixels(side), trainable).unwrap();
                    assert_eq!(got.dims(), [2, 16], "{key}");
                    let err = max_abs_diff(&got, &expected[&key]);
                    assert!(
                        err < POOLED_TOLERANCE,
                        "{key} ({kernels:?}, trainable {trainable}): max error {err}"
                    );
                    worst = worst.max(err);
                }
            }
        }
    }
    eprintln!("largest |candle − transformers| over the pooled outputs: {worst:e}");
}

#[test]
fn class_tokens_hold_the_files_values() {
    for (family, in_file, name) in [
        (
            VitFamily::Clip,
            "vision_model.embeddings.class_embedding",
            "embeddings.class_embedding",
        ),
        (
            VitFamily::Dinov2,
            "embeddings.cls_token",
            "embeddings.cls_token",
        ),
    ] {
        let (varmap, _) = build(family, Pooling::Cls, Kernels::Fast);
        let file = fixture(&format!("{}_tiny.safetensors", family.name()));
        assert_eq!(
            flat::<f32>(&var(&varmap, name)),
            flat::<f32>(&file[in_file])
        );
    }
}

#[test]
fn gradients_match_torch_through_interpolated_positions() {
    let expected = expected();
    let x = pixels(24);
    let mut worst = 0f32;
    for family in FAMILIES {
        let (varmap, cls) = build(family, Pooling::Cls, Kernels::Fast);
        // A second backbone on the same vars, pooling by the mean.
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mean = Vit::new("tiny", &tiny(family), Pooling::Mean, Kernels::Fast, vb).unwrap();
        let all = cls.blocks().len();
        let term = |vit: &Vit, r: &str| {
            (vit.forward(&x, all).unwrap() * &expected[r])
                .and_then(|t| t.sum_all())
                .unwrap()
        };
        let grads = (term(&cls, "r.cls") + term(&mean, "r.mean"))
            .unwrap()
            .backward()
            .unwrap();
        let prefix = format!("{}.grad.", family.name());
        let mut checked = 0;
        for (key, want) in expected.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            let name = &key[prefix.len()..];
            let got = grads
                .get(&var(&varmap, name))
                .unwrap_or_else(|| panic!("{name} has a gradient"));
            let scale = flat::<f32>(want).iter().fold(1f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(got, want);
            assert!(err < 1e-4 * scale, "{key}: max error {err} (scale {scale})");
            worst = worst.max(err / scale);
            checked += 1;
        }
        assert!(checked >= 4, "{family:?}: {checked} gradients checked");
    }
    eprintln!("largest |candle − torch| / max(1, |torch|) over the gradients: {worst:e}");
}

#[test]
fn bicubic_resize_matches_torch_interpolate() {
    let expected = expected();
    let input = &expected["bicubic.in"]; // [1, C, h, w]
    let (_, c, h, w) = input.dims4().unwrap();
    let grid = input
        .squeeze(0)
        .and_then(|t| t.permute((1, 2, 0)))
        .and_then(|t| t.reshape((h * w, c)))
        .unwrap();
    let (mut checked, mut worst) = (0, 0f32);
    for (key, want) in expected
        .iter()
        .filter(|(k, _)| k.starts_with("bicubic.out."))
    {
        let (_, _, nh, nw) = want.dims4().unwrap();
        let got = resize_grid(&grid, (h, w), (nh, nw))
            .and_then(|t| t.reshape((nh, nw, c)))
            .and_then(|t| t.permute((2, 0, 1)))
            .and_then(|t| t.unsqueeze(0))
            .unwrap();
        let err = max_abs_diff(&got, want);
        assert!(err < 1e-5, "{key}: max error {err}");
        worst = worst.max(err);
        checked += 1;
    }
    assert_eq!(checked, 5);
    eprintln!("largest |resize_grid − F.interpolate|: {worst:e}");
}

#[test]
fn freezing_trains_the_last_layers_and_the_final_norm_only() {
    for family in FAMILIES {
        let (varmap, vit) = build(family, Pooling::Mean, Kernels::Fast);
        let x = pixels(16);
        let vars = varmap.data().lock().unwrap().clone();
        // Names of the vars with a non-zero gradient.
        let trained = |trainable: usize| -> BTreeSet<String> {
            let out = vit.forward(&x, trainable).unwrap();
            let grads = (&out * seeded(5)(&out).unwrap())
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .unwrap();
            vars.iter()
                .filter(|(_, v)| {
                    grads
                        .get(v)
                        .is_some_and(|g| flat::<f32>(g).iter().any(|x| *x != 0.0))
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        let blocks = vit.block_var_names();
        assert_eq!(blocks.len(), 3);
        let last_n = |n: usize| -> BTreeSet<String> {
            blocks[blocks.len() - n..]
                .iter()
                .flatten()
                .cloned()
                .collect()
        };
        assert!(trained(0).is_empty(), "{family:?}");
        let last = trained(1);
        let norm = match family {
            VitFamily::Clip => "post_layernorm.weight",
            VitFamily::Dinov2 => "layernorm.weight",
        };
        assert!(last.contains(norm), "{last:?}");
        assert_eq!(last, last_n(1), "{family:?}");
        assert_eq!(trained(2), last_n(2), "{family:?}");
        // Every var, the class token and position embeddings included: nothing in a
        // trainable block runs on a forward-only kernel.
        let every: BTreeSet<String> = vars.keys().cloned().collect();
        assert_eq!(last_n(3), every);
        assert_eq!(trained(3), every, "{family:?}");
        assert_eq!(trained(usize::MAX), every, "{family:?}");
    }
}

#[test]
fn blocks_are_the_embeddings_then_layers_with_the_final_norm_last() {
    let (_, clip) = build(VitFamily::Clip, Pooling::Cls, Kernels::Fast);
    assert_eq!(
        clip.blocks(),
        [
            vec!["embeddings", "pre_layrnorm"],
            vec!["encoder.layers.0"],
            vec!["encoder.layers.1", "post_layernorm"],
        ]
    );
    let (_, dinov2) = build(VitFamily::Dinov2, Pooling::Cls, Kernels::Fast);
    assert_eq!(
        dinov2.blocks(),
        [
            vec!["embeddings"],
            vec!["encoder.layer.0"],
            vec!["encoder.layer.1", "layernorm"],
        ]
    );
    assert_eq!(
        dinov2.block_var_names()[0],
        [
            "embeddings.patch_embeddings.projection.weight",
            "embeddings.cls_token",
            "embeddings.patch_embeddings.projection.bias",
            "embeddings.position_embeddings",
        ]
    );
}

#[test]
fn image_sides_must_be_multiples_of_the_patch() {
    let (_, vit) = build(VitFamily::Clip, Pooling::Cls, Kernels::Fast);
    for side in [18, 2] {
        let x = Tensor::zeros((1, 3, side, side), DType::F32, &Device::Cpu).unwrap();
        let err = vit.forward(&x, 0).unwrap_err().to_string();
        assert!(err.contains("multiple of the patch size 4"), "{err}");
    }
    let b32 = architecture("clip-vit-b32").unwrap();
    assert!(b32.accepts_image_size(224) && b32.accepts_image_size(32));
    assert!(!b32.accepts_image_size(225) && !b32.accepts_image_size(0));
    assert!(architecture("resnet18").unwrap().accepts_image_size(225));
}

#[test]
fn pooling_applies_to_vits_only() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let err = build_backbone_with("resnet18", Kernels::Fast, Some(Pooling::Mean), vb.clone())
        .err()
        .expect("a CNN takes no pooling");
    let msg = err.to_string();
    assert!(
        matches!(err, ModelError::PoolingNotApplicable { .. })
            && msg.contains("clip, dinov2")
            && msg.contains("`resnet18` is a resnet"),
        "{msg}"
    );
    assert!(build_backbone_with("tiny-cnn", Kernels::Fast, None, vb).is_ok());
}

/// A VarBuilder backend that records names and shapes and hands out stride-0 zeros, so even
/// ViT-L builds without memory.
struct Shapes<'a>(&'a Mutex<Vec<(String, Vec<usize>)>>);

impl SimpleBackend for Shapes<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: shapes only")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

#[test]
fn real_configs_have_hugging_face_names_shapes_and_sizes() {
    // Vars and parameters as transformers 5.24 counts them (`CLIPVisionModel`, `Dinov2Model`
    // without `mask_token`), computed by make_fixtures.py's environment.
    let table = [
        ("clip-vit-b32", 199, 87_456_000, 768, 12),
        ("clip-vit-b16", 199, 85_799_424, 768, 12),
        ("clip-vit-l14", 391, 303_179_776, 1024, 24),
        ("clip-vit-l14-336", 391, 303_507_456, 1024, 24),
        ("dinov2-s14", 222, 22_056_192, 384, 12),
        ("dinov2-b14", 222, 86_579_712, 768, 12),
    ];
    for (name, count, params, dim, layers) in table {
        let log = Mutex::new(Vec::new());
        let vb = VarBuilder::from_backend(Box::new(Shapes(&log)), DType::F32, Device::Cpu);
        let backbone = build_backbone(name, Kernels::Fast, vb).unwrap();
        let log: HashMap<String, Vec<usize>> = log.into_inner().unwrap().into_iter().collect();
        assert_eq!(log.len(), count, "{name}");
        let total: usize = log.values().map(|d| d.iter().product::<usize>()).sum();
        assert_eq!(total, params, "{name}");
        assert_eq!(backbone.feature_dim(), dim, "{name}");
        assert_eq!(backbone.blocks().len(), 1 + layers, "{name}");
        let recorded: BTreeSet<&String> = backbone.block_var_names().iter().flatten().collect();
        assert_eq!(recorded, log.keys().collect(), "{name}");
        let arch = architecture(name).unwrap();
        let shape = |n: &str| log[n].clone();
        match arch.family() {
            "clip" => {
                let (p, s) = (
                    arch.patch_size().unwrap(),
                    arch.native_image_size().unwrap(),
                );
                assert_eq!(
                    shape("embeddings.position_embedding.weight"),
                    [1 + (s / p) * (s / p), dim]
                );
                assert_eq!(shape("embeddings.patch_embedding.weight"), [dim, 3, p, p]);
                assert_eq!(shape("embeddings.class_embedding"), [dim]);
                assert_eq!(
                    shape(&format!("encoder.layers.{}.mlp.fc1.weight", layers - 1)),
                    [4 * dim, dim]
                );
                assert_eq!(shape("post_layernorm.bias"), [dim]);
            }
            "dinov2" => {
                assert_eq!(shape("embeddings.position_embeddings"), [1, 1370, dim]);
                assert_eq!(shape("embeddings.cls_token"), [1, 1, dim]);
                assert_eq!(
                    shape("encoder.layer.0.attention.attention.query.weight"),
                    [dim, dim]
                );
                assert_eq!(shape("encoder.layer.11.layer_scale2.lambda1"), [dim]);
                assert_eq!(shape("layernorm.weight"), [dim]);
            }
            other => panic!("{name}: family {other}"),
        }
    }
    let positions = |name: &str| {
        let a = architecture(name).unwrap();
        a.native_image_size().unwrap() / a.patch_size().unwrap()
    };
    assert_eq!(
        [
            positions("clip-vit-b32"),
            positions("clip-vit-l14-336"),
            positions("dinov2-s14")
        ],
        [7, 24, 37]
    );
}

#[test]
fn dinov2_s14_and_clip_b32_build_in_a_varmap_and_run_on_small_images() {
    // DINOv2-S/14 inside a GeoNet, four 28 px views (a 2 × 2 grid from the 37 × 37 table).
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = GeoNet::new("dinov2-s14", Fusion::Concat, 3, vb).unwrap();
    init_seeded(&varmap, 1).unwrap();
    assert_eq!(net.backbone().feature_dim(), 384);
    assert_eq!(net.backbone_blocks(), 13);
    let backbone: BTreeSet<String> = net.trainable_var_names(usize::MAX).into_iter().collect();
    let in_map: BTreeSet<String> = varmap
        .data()
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("backbone."))
        .cloned()
        .collect();
    assert_eq!(backbone, in_map);
    assert_eq!(in_map.len(), 222);
    assert!(in_map.contains("backbone.encoder.layer.11.attention.output.dense.weight"));
    let x = Tensor::from_vec(
        super::test_support::pattern::<f32>(4 * 3 * 28 * 28, 1, 2.0, 1.0),
        (1, 4, 3, 28, 28),
        &Device::Cpu,
    )
    .unwrap();
    let y = net.forward(&x, 1).unwrap();
    assert_eq!(y.dims(), [1, 3]);
    assert!(flat::<f32>(&y).iter().all(|v| v.is_finite()));

    // CLIP B/32 with mean pooling on 64 px (2 × 2 patches from the 7 × 7 table).
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let b32 = build_backbone_with("clip-vit-b32", Kernels::Fast, Some(Pooling::Mean), vb).unwrap();
    assert_eq!(varmap.all_vars().len(), 199);
    let x = Tensor::from_vec(
        super::test_support::pattern::<f32>(2 * 3 * 64 * 64, 2, 2.0, 1.0),
        (2, 3, 64, 64),
        &Device::Cpu,
    )
    .unwrap();
    let y = b32.forward(&x, 0).unwrap();
    assert_eq!(y.dims(), [2, 768]);
    assert!(flat::<f32>(&y).iter().all(|v| v.is_finite()));
}
