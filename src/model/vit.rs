//! Vision Transformers with Hugging Face's layouts and var names: OpenAI CLIP's vision tower
//! (`CLIPVisionModel`: `clip-vit-b32`, `-b16`, `-l14`, `-l14-336`) and DINOv2 (`Dinov2Model`:
//! `dinov2-s14`, `-b14`). Radford et al. 2021, "Learning Transferable Visual Models From
//! Natural Language Supervision"; Oquab et al. 2023, "DINOv2".
//!
//! # The network
//!
//! Patches of `p × p` pixels are embedded linearly (a stride-`p` conv, computed as one matrix
//! product over the unfolded patches), a class token is put in front, position embeddings are
//! added (CLIP then applies `pre_layrnorm`). `layers` pre-norm encoder layers follow:
//! `h += ls₁·attn(norm1(h))`, `h += ls₂·mlp(norm2(h))`, where the layer scales `ls` exist for
//! DINOv2 only and the MLP is `fc2(act(fc1(·)))`, act = quick_gelu `x·σ(1.702x)` (CLIP) or the
//! exact erf gelu (DINOv2). LayerNorm eps is 1e-5 (CLIP) or 1e-6 (DINOv2). The output is
//! `[N, hidden]`, before CLIP's visual projection (which is not built).
//!
//! # Pooling ([`Pooling`])
//!
//! With `h` the last encoder layer's tokens and `norm` the family's final LayerNorm (CLIP
//! `post_layernorm`, DINOv2 `layernorm`), applied to each token on its own:
//!
//! * `cls` (default): `norm(h[:, 0])`, Hugging Face's `pooler_output` for both families.
//! * `mean`: `mean over i ≥ 1 of norm(h[:, i])`, the patch tokens without the class token. For
//!   CLIP that is `post_layernorm(last_hidden_state[:, 1:]).mean(1)` (CLIP's
//!   `last_hidden_state` is not normalised); for DINOv2 `last_hidden_state[:, 1:].mean(1)`.
//!
//! # Image sizes
//!
//! The image side must be a positive multiple of the patch side; non-square images work too.
//! When the patch grid differs from the one the position embeddings were made for
//! ([`VitConfig::image`]` / patch`, e.g. 37 × 37 for DINOv2 at 518 px), the patch positions are
//! resized bicubically ([`super::bicubic`], torch's `F.interpolate(mode="bicubic",
//! align_corners=False)`) exactly where transformers 5 does: CLIP with
//! `interpolate_pos_encoding=True`, DINOv2 always (older transformers resized DINOv2's by a
//! `scale_factor` with a `+0.1` offset instead, which differs slightly). The class token's
//! position is kept.
//!
//! # Freezing
//!
//! Blocks ([`Backbone::blocks`]): the embeddings (CLIP with `pre_layrnorm`), then one per
//! encoder layer; the final LayerNorm belongs to the last block, so `trainable = n` trains the
//! last `n` layers and the final norm. Blocks before the first trainable one run and their
//! output is `detach()`ed. Trainable blocks run on differentiable candle ops (softmax and
//! LayerNorm composed of elementwise ops); frozen blocks on [`Kernels::Fast`] use candle's fused
//! `softmax_last_dim` and `layer_norm`, which are forward-only (`apply_op*_no_bwd`: gradients
//! through them would be silently cut, so they must never run in a trainable block), and run
//! each linear layer's bias, activation, scale and residual add in place on the product
//! ([`super::linear_tail`], on the CPU in f32). [`Kernels::Reference`] uses the composed ops
//! everywhere.
//!
//! # Why not candle-transformers
//!
//! Its `clip::vision_model` has the right CLIP names, but its encoder layers are private
//! (no per-layer forward, hence no freezing of the first layers), it has no mean pooling and no
//! position interpolation, runs the forward-only `softmax`/`layer_norm` everywhere and, in
//! 0.11.1, silently replaces `class_embedding` by an untrainable random tensor when the
//! VarBuilder does not already hold it. Its `dinov2` uses Meta's original names (`blocks.N.attn.qkv`),
//! not Hugging Face's, and resizes position embeddings by nearest neighbour. Hence this compact
//! implementation; it uses candle-nn's ops (`softmax_last_dim`, `layer_norm`, `sigmoid`).

use candle_core::{D, DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::Kernels;
use super::backbone::{Backbone, first_trainable};
use super::bicubic::resize_grid;
use super::linear_tail::{Act, Scale, linear_tail};
use crate::vocab::{Pooling, VitConfig, VitFamily};

/// Records the full names of the vars a block creates (like `backbone::Names` for the CNNs).
struct Vars(Vec<String>);

impl Vars {
    fn get(&mut self, vb: &VarBuilder, shape: &[usize], name: &str, init: Init) -> Result<Tensor> {
        let prefix = vb.prefix();
        self.0.push(if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        });
        vb.get_with_hints(shape, name, init)
    }

    /// `weight` `[out, in]` and `bias` `[out]` under `vb`, like `nn.Linear`.
    fn linear(&mut self, vb: VarBuilder, cin: usize, cout: usize) -> Result<Linear> {
        let bound = 1.0 / (cin as f64).sqrt();
        let uniform = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Linear {
            weight: self.get(&vb, &[cout, cin], "weight", uniform)?,
            bias: self.get(&vb, &[cout], "bias", uniform)?,
        })
    }

    /// LayerNorm `weight` and `bias` under `vb`.
    fn norm(&mut self, vb: VarBuilder, dim: usize, eps: f64) -> Result<Norm> {
        Ok(Norm {
            weight: self.get(&vb, &[dim], "weight", Init::Const(1.0))?,
            bias: self.get(&vb, &[dim], "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

/// `x · Wᵀ + b` on `[tokens, in]`: one matrix product.
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// The product, then `act(· + b)·scale + residual`; `fast` fuses that tail
    /// ([`linear_tail`]), so only for frozen blocks.
    fn forward(
        &self,
        x: &Tensor,
        act: Act,
        scale: Scale,
        residual: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor> {
        linear_tail(x, (&self.weight, &self.bias), act, scale, residual, fast)
    }

    /// `residual + layer_scale?·(x · Wᵀ + b)`: the end of either half of a layer.
    fn residual(
        &self,
        x: &Tensor,
        layer_scale: Option<&Tensor>,
        residual: &Tensor,
        fast: bool,
    ) -> Result<Tensor> {
        let scale = Scale::channels(layer_scale);
        self.forward(x, Act::Identity, scale, Some(residual), fast)
    }
}

/// LayerNorm over the last dimension.
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    /// `fast`: candle's fused forward-only kernel (see the module doc).
    fn forward(&self, x: &Tensor, fast: bool) -> Result<Tensor> {
        if fast && x.dtype() != DType::F64 {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        } else {
            let mean = x.mean_keepdim(D::Minus1)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
            centred
                .broadcast_div(&(var + self.eps)?.sqrt()?)?
                .broadcast_mul(&self.weight)?
                .broadcast_add(&self.bias)
        }
    }
}

/// Softmax over the last dimension; `fast` as for [`Norm::forward`].
fn softmax(x: &Tensor, fast: bool) -> Result<Tensor> {
    if fast {
        candle_nn::ops::softmax_last_dim(&x.contiguous()?)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// Patch + class + position embeddings (+ CLIP's `pre_layrnorm`).
struct Embeddings {
    /// `[hidden, 3·p·p]` view of the patch conv's `[hidden, 3, p, p]` weight.
    patch: Tensor,
    patch_bias: Option<Tensor>,
    /// `[hidden]` (CLIP) or `[1, 1, hidden]` (DINOv2).
    class: Tensor,
    /// `[1 + grid², hidden]` (CLIP) or `[1, 1 + grid², hidden]` (DINOv2).
    position: Tensor,
    pre_norm: Option<Norm>,
}

/// One pre-norm encoder layer.
struct Layer {
    norm1: Norm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    scale1: Option<Tensor>,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
    scale2: Option<Tensor>,
}

/// A family's var names inside one encoder layer, relative to the layer.
struct LayerNames {
    norm1: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    out: &'static str,
    scale1: Option<&'static str>,
    norm2: &'static str,
    scale2: Option<&'static str>,
}

const CLIP_LAYER: LayerNames = LayerNames {
    norm1: "layer_norm1",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    out: "self_attn.out_proj",
    scale1: None,
    norm2: "layer_norm2",
    scale2: None,
};

const DINOV2_LAYER: LayerNames = LayerNames {
    norm1: "norm1",
    q: "attention.attention.query",
    k: "attention.attention.key",
    v: "attention.attention.value",
    out: "attention.output.dense",
    scale1: Some("layer_scale1"),
    norm2: "norm2",
    scale2: Some("layer_scale2"),
};

/// A CLIP vision tower or a DINOv2 (see the module doc).
pub struct Vit {
    name: String,
    config: VitConfig,
    pooling: Pooling,
    kernels: Kernels,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    final_norm: Norm,
    prefixes: Vec<Vec<String>>,
    var_names: Vec<Vec<String>>,
}

impl Vit {
    /// Builds `config` with its vars under `vb` (Hugging Face names, without `vision_model.` /
    /// `dinov2.`); `name` is for error messages.
    pub fn new(
        name: &str,
        config: &VitConfig,
        pooling: Pooling,
        kernels: Kernels,
        vb: VarBuilder,
    ) -> Result<Self> {
        let &VitConfig {
            family,
            hidden: d,
            layers,
            heads,
            mlp,
            patch: p,
            image,
        } = config;
        if heads == 0 || d % heads != 0 || p == 0 || image % p != 0 {
            candle_core::bail!("{name}: inconsistent ViT shape {config:?}")
        }
        let positions = 1 + (image / p).pow(2);
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let clip = family == VitFamily::Clip;
        let eps = if clip { 1e-5 } else { 1e-6 };

        let mut vars = Vars(Vec::new());
        let e = vb.pp("embeddings");
        let embeddings = if clip {
            let patch = vars.get(&e, &[d, 3, p, p], "patch_embedding.weight", small)?;
            Embeddings {
                class: vars.get(&e, &[d], "class_embedding", small)?,
                patch: patch.reshape((d, 3 * p * p))?,
                patch_bias: None,
                position: vars.get(&e, &[positions, d], "position_embedding.weight", small)?,
                pre_norm: Some(vars.norm(vb.pp("pre_layrnorm"), d, eps)?),
            }
        } else {
            let proj = e.pp("patch_embeddings.projection");
            let patch = vars.get(&proj, &[d, 3, p, p], "weight", small)?;
            Embeddings {
                class: vars.get(&e, &[1, 1, d], "cls_token", small)?,
                patch: patch.reshape((d, 3 * p * p))?,
                patch_bias: Some(vars.get(&proj, &[d], "bias", Init::Const(0.0))?),
                position: vars.get(&e, &[1, positions, d], "position_embeddings", small)?,
                pre_norm: None,
            }
        };
        let mut prefixes = vec![if clip {
            vec!["embeddings".to_string(), "pre_layrnorm".to_string()]
        } else {
            vec!["embeddings".to_string()]
        }];
        let mut var_names = vec![vars.0];

        let (names, encoder) = if clip {
            (&CLIP_LAYER, "encoder.layers")
        } else {
            (&DINOV2_LAYER, "encoder.layer")
        };
        let mut built = Vec::with_capacity(layers);
        for i in 0..layers {
            let prefix = format!("{encoder}.{i}");
            let vb = vb.pp(&prefix);
            let mut vars = Vars(Vec::new());
            let scale = |vars: &mut Vars, n: Option<&str>| {
                n.map(|n| vars.get(&vb.pp(n), &[d], "lambda1", Init::Const(1.0)))
                    .transpose()
            };
            built.push(Layer {
                norm1: vars.norm(vb.pp(names.norm1), d, eps)?,
                q: vars.linear(vb.pp(names.q), d, d)?,
                k: vars.linear(vb.pp(names.k), d, d)?,
                v: vars.linear(vb.pp(names.v), d, d)?,
                out: vars.linear(vb.pp(names.out), d, d)?,
                scale1: scale(&mut vars, names.scale1)?,
                norm2: vars.norm(vb.pp(names.norm2), d, eps)?,
                fc1: vars.linear(vb.pp("mlp.fc1"), d, mlp)?,
                fc2: vars.linear(vb.pp("mlp.fc2"), mlp, d)?,
                scale2: scale(&mut vars, names.scale2)?,
            });
            prefixes.push(vec![prefix]);
            var_names.push(vars.0);
        }
        // The final norm trains with the last block.
        let final_name = if clip { "post_layernorm" } else { "layernorm" };
        let mut vars = Vars(Vec::new());
        let final_norm = vars.norm(vb.pp(final_name), d, eps)?;
        prefixes
            .last_mut()
            .expect("the embeddings block")
            .push(final_name.to_string());
        var_names
            .last_mut()
            .expect("the embeddings block")
            .extend(vars.0);

        Ok(Self {
            name: name.to_string(),
            config: *config,
            pooling,
            kernels,
            embeddings,
            layers: built,
            final_norm,
            prefixes,
            var_names,
        })
    }

    /// The pooling the backbone was built with.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// `[N, 3, H, W]` → tokens `[N, 1 + (H/p)·(W/p), hidden]`.
    fn embed(&self, x: &Tensor, fast: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (p, d) = (self.config.patch, self.config.hidden);
        if c != 3 || h == 0 || w == 0 || h % p != 0 || w % p != 0 {
            candle_core::bail!(
                "{}: images must be [N, 3, S, S] with S a positive multiple of the patch size {p}, got {:?}",
                self.name,
                x.dims()
            )
        }
        let (gh, gw) = (h / p, w / p);
        let e = &self.embeddings;
        let patches = x
            .reshape((n, 3, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n * gh * gw, 3 * p * p))?
            .matmul(&e.patch.t()?)?;
        let patches = match &e.patch_bias {
            Some(b) => patches.broadcast_add(b)?,
            None => patches,
        };
        let class = e.class.reshape((1, 1, d))?.broadcast_as((n, 1, d))?;
        let tokens = Tensor::cat(&[&class, &patches.reshape((n, gh * gw, d))?], 1)?;

        let grid = self.config.image / p;
        let position = e.position.reshape(((), d))?;
        let position = if (gh, gw) == (grid, grid) {
            position
        } else {
            let resized =
                resize_grid(&position.narrow(0, 1, grid * grid)?, (grid, grid), (gh, gw))?;
            Tensor::cat(&[&position.narrow(0, 0, 1)?, &resized], 0)?
        };
        let tokens = tokens.broadcast_add(&position.unsqueeze(0)?)?;
        match &e.pre_norm {
            Some(norm) => norm.forward(&tokens, fast),
            None => Ok(tokens),
        }
    }

    /// One encoder layer on `[N, S, hidden]`.
    fn layer(&self, layer: &Layer, x: &Tensor, fast: bool) -> Result<Tensor> {
        let (n, s, d) = x.dims3()?;
        let heads = self.config.heads;
        let hd = d / heads;
        let x = x.reshape((n * s, d))?;

        let h = layer.norm1.forward(&x, fast)?;
        let split = |t: Tensor| t.reshape((n, s, heads, hd))?.transpose(1, 2)?.contiguous();
        let plain = |linear: &Linear, scale| linear.forward(&h, Act::Identity, scale, None, fast);
        let q = split(plain(&layer.q, Scale::Scalar((hd as f64).powf(-0.5)))?)?;
        let k = split(plain(&layer.k, Scale::One)?)?;
        let v = split(plain(&layer.v, Scale::One)?)?;
        let attn = softmax(&q.matmul(&k.t()?)?, fast)?;
        let a = attn.matmul(&v)?.transpose(1, 2)?.reshape((n * s, d))?;
        let x = layer.out.residual(&a, layer.scale1.as_ref(), &x, fast)?;

        let act = match self.config.family {
            VitFamily::Clip => Act::QuickGelu,
            VitFamily::Dinov2 => Act::GeluErf,
        };
        let h = layer
            .fc1
            .forward(&layer.norm2.forward(&x, fast)?, act, Scale::One, None, fast)?;
        let x = layer.fc2.residual(&h, layer.scale2.as_ref(), &x, fast)?;
        x.reshape((n, s, d))
    }
}

impl Backbone for Vit {
    /// `x`: `[N, 3, S, S]` normalised with [`VitFamily::normalisation`] → `[N, hidden]`, pooled
    /// as the module doc says.
    fn forward(&self, x: &Tensor, trainable: usize) -> Result<Tensor> {
        let blocks = self.prefixes.len();
        let first = first_trainable(blocks, trainable);
        let fast = |block: usize| self.kernels == Kernels::Fast && block < first;

        let mut h = self.embed(x, fast(0))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let block = i + 1;
            if block == first {
                h = h.detach();
            }
            h = self.layer(layer, &h, fast(block))?;
        }
        let fast = fast(blocks - 1);
        let pooled = match self.pooling {
            Pooling::Cls => self
                .final_norm
                .forward(&h.narrow(1, 0, 1)?.squeeze(1)?, fast)?,
            Pooling::Mean => {
                let patches = h.narrow(1, 1, h.dim(1)? - 1)?;
                self.final_norm.forward(&patches, fast)?.mean(1)?
            }
        };
        Ok(if trainable == 0 {
            pooled.detach()
        } else {
            pooled
        })
    }

    fn feature_dim(&self) -> usize {
        self.config.hidden
    }

    fn blocks(&self) -> &[Vec<String>] {
        &self.prefixes
    }

    fn block_var_names(&self) -> &[Vec<String>] {
        &self.var_names
    }
}
