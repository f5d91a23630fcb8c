//! Backbones, view fusion and the head (being written).
