//! Which part of a weights file is the backbone: the tensor-name prefix, given or inferred,
//! and, when nothing fits, a guess at what the file holds instead.

use std::collections::{BTreeMap, BTreeSet};

/// `model.weights_prefix` as matched against names: empty (none), or ending in `.`.
pub fn normalise(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('.') {
        prefix.to_string()
    } else {
        format!("{prefix}.")
    }
}

/// For each prefix some file name proposes, how many `wanted` names it covers: a file name
/// `p` + `w` (`p` empty or ending in `.`) proposes `p` for the wanted name `w`.
pub fn coverage<'a>(
    file_names: impl IntoIterator<Item = &'a str>,
    wanted: &BTreeSet<&str>,
) -> BTreeMap<&'a str, usize> {
    let mut cover = BTreeMap::new();
    for name in file_names {
        let splits = std::iter::once(0).chain(name.match_indices('.').map(|(i, _)| i + 1));
        for at in splits {
            if wanted.contains(&name[at..]) {
                *cover.entry(&name[..at]).or_insert(0) += 1;
            }
        }
    }
    cover
}

/// The prefix covering the most wanted names (ties: the shortest, then the first in
/// alphabetical order); `None` when no prefix covers any.
pub fn best<'a>(cover: &BTreeMap<&'a str, usize>) -> Option<&'a str> {
    cover
        .iter()
        .filter(|(_, n)| **n > 0)
        .min_by_key(|(p, n)| (std::cmp::Reverse(**n), p.len(), **p))
        .map(|(p, _)| *p)
}

/// A model family recognised by one of its tensor names.
struct Family {
    /// A name only that family's files hold (matched whole or after a `.`).
    marker: &'static str,
    /// What a file holding it looks like: `a CLIP vision tower`.
    file: &'static str,
    /// The family as a kind of names: `CLIP vision tower`.
    names: &'static str,
}

/// The families told apart in [`super::ModelError::WrongFamily`], first match wins.
const FAMILIES: [Family; 4] = [
    Family {
        marker: "layer1.0.conv1.weight",
        file: "a torchvision ResNet",
        names: "torchvision ResNet",
    },
    Family {
        marker: "embeddings.class_embedding",
        file: "a CLIP vision tower",
        names: "CLIP vision tower",
    },
    Family {
        marker: "embeddings.cls_token",
        file: "a DINOv2 (or other Hugging Face ViT) model",
        names: "DINOv2 / ViT",
    },
    Family {
        marker: "block0.conv.weight",
        file: "geoexp's tiny-cnn",
        names: "geoexp tiny-cnn",
    },
];

/// Whether `name` is `marker`, or ends with `.` + `marker`.
fn has_marker(name: &str, marker: &str) -> bool {
    name.strip_suffix(marker)
        .is_some_and(|p| p.is_empty() || p.ends_with('.'))
}

/// What a weights file whose (sorted) names are `names` holds: the family, if recognised, and
/// the names to show (its markers first, then a few others under the same prefix; or the
/// file's first names).
pub fn guess_file(names: &[&str]) -> (Option<String>, Vec<String>) {
    const SHOWN: usize = 4;
    for f in &FAMILIES {
        let hits: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| has_marker(n, f.marker))
            .collect();
        if let Some(first) = hits.first() {
            let prefix = &first[..first.len() - f.marker.len()];
            let mut seen: Vec<String> = hits.iter().take(SHOWN).map(|n| n.to_string()).collect();
            seen.extend(
                names
                    .iter()
                    .filter(|n| n.starts_with(prefix) && !hits.contains(n))
                    .take(SHOWN.saturating_sub(seen.len()))
                    .map(|n| n.to_string()),
            );
            return (Some(f.file.to_string()), seen);
        }
    }
    // A CLIP checkpoint with its vision tower but without the class embedding.
    if names.iter().any(|n| n.starts_with("vision_model.")) {
        let seen = names
            .iter()
            .filter(|n| n.starts_with("vision_model."))
            .take(SHOWN)
            .map(|n| n.to_string())
            .collect();
        return (Some("a CLIP vision tower".to_string()), seen);
    }
    (None, names.iter().map(|n| n.to_string()).collect())
}

/// What a backbone whose wanted (sorted) names are `wanted` is, if recognised, and a few of
/// those names: the marker first, then the shallowest `*.weight` ones.
pub fn guess_model(wanted: &BTreeSet<&str>) -> (Option<String>, Vec<String>) {
    let family = FAMILIES.iter().find(|f| wanted.contains(f.marker));
    let mut examples: Vec<&str> = family.map(|f| f.marker).into_iter().collect();
    let mut rest: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|n| !examples.contains(n))
        .collect();
    rest.sort_by_key(|n| (!n.ends_with(".weight"), n.matches('.').count(), *n));
    examples.extend(rest.into_iter().take(3 - examples.len()));
    (
        family.map(|f| f.names.to_string()),
        examples.into_iter().map(String::from).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_adds_the_dot_and_keeps_empty() {
        assert_eq!(normalise(""), "");
        assert_eq!(normalise("module"), "module.");
        assert_eq!(normalise("backbone."), "backbone.");
        assert_eq!(normalise("model.backbone"), "model.backbone.");
    }

    #[test]
    fn the_prefix_covering_most_names_wins_and_ties_go_to_the_shortest() {
        let wanted: BTreeSet<&str> = ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight"].into();
        let names = [
            "module.conv1.weight",
            "module.bn1.weight",
            "module.layer1.0.conv1.weight",
            "head.weight",
            "ema.conv1.weight",
        ];
        let cover = coverage(names, &wanted);
        // `module.layer1.0.` proposes itself for `conv1.weight`.
        assert_eq!(cover["module."], 3);
        assert_eq!(cover["module.layer1.0."], 1);
        assert_eq!(cover["ema."], 1);
        assert_eq!(best(&cover), Some("module."));

        let tie = coverage(["student.conv1.weight", "ema.conv1.weight"], &wanted);
        assert_eq!(best(&tie), Some("ema."));
        let exact = coverage(["conv1.weight", "a.conv1.weight"], &wanted);
        assert_eq!(best(&exact), Some(""));
        assert_eq!(best(&coverage(["x.y"], &wanted)), None);
    }

    #[test]
    fn families_are_told_by_their_markers() {
        let (guess, seen) = guess_file(&[
            "logit_scale",
            "text_model.embeddings.token_embedding.weight",
            "vision_model.embeddings.class_embedding",
            "vision_model.embeddings.patch_embedding.weight",
        ]);
        assert_eq!(guess.as_deref(), Some("a CLIP vision tower"));
        assert_eq!(seen[0], "vision_model.embeddings.class_embedding");
        assert!(
            seen.iter().skip(1).all(|n| n.starts_with("vision_model.")),
            "{seen:?}"
        );

        let (guess, _) = guess_file(&["dinov2.embeddings.cls_token", "classifier.weight"]);
        assert!(guess.unwrap().contains("DINOv2"));
        let (guess, seen) = guess_file(&["a", "b"]);
        assert_eq!((guess, seen), (None, vec!["a".into(), "b".into()]));
        // `xlayer1.0.conv1.weight` is no marker.
        assert_eq!(guess_file(&["xlayer1.0.conv1.weight"]).0, None);

        let wanted: BTreeSet<&str> = [
            "bn1.bias",
            "bn1.weight",
            "conv1.weight",
            "layer1.0.conv1.weight",
        ]
        .into();
        let (family, examples) = guess_model(&wanted);
        assert_eq!(family.as_deref(), Some("torchvision ResNet"));
        assert_eq!(
            examples,
            ["layer1.0.conv1.weight", "bn1.weight", "conv1.weight"]
        );
    }
}
