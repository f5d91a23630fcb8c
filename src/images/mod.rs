//! Decoding views into one memory-mapped tensor file (being written).
