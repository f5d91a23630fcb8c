use super::*;

use protobuf::Message;
use tensorboard_proto::plugin_hparams::HParamsPluginData_oneof_data as HData;

/// A 3×2 (wide, not square) RGB PNG, so swapped width/height would show.
fn png_3x2() -> Vec<u8> {
    let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 120, 7]));
    let mut out = Vec::new();
    img.write_to(&mut io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Writes one of everything; used by the round-trip test and by the Python check.
fn write_sample(dir: &Path) -> PathBuf {
    let mut w = EventWriter::create(dir).unwrap();
    w.scalar("train/loss", 1, 2.5);
    w.scalar("train/loss", 2, 0.1);
    w.scalar("val/acc", 2, 1.0 / 3.0);
    w.histogram("weights", 2, &[0.0, 1.0, 1.0, 2.0, 10.0, f64::NAN]);
    w.image("maps/classes", 2, &png_3x2(), 3, 2);
    let mut hp = BTreeMap::new();
    hp.insert("lr".to_string(), HParamValue::Number(0.001));
    hp.insert("pretrained".to_string(), HParamValue::Bool(true));
    hp.insert("model".to_string(), HParamValue::Text("resnet".to_string()));
    w.hparams_start(&hp, &["val/acc".to_string()]);
    w.hparams_end(true);
    w.flush().unwrap();
    w.path().to_path_buf()
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    // The CRC-32C check value from RFC 3720; guards the dependency's table.
    assert_eq!(
        tensorboard_rs::masked_crc32c::crc32c(b"123456789"),
        0xE306_9283
    );
}

#[test]
fn round_trip_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sample(dir.path());
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert_eq!(name.split('.').count(), 7, "{name}");

    let events = read_events(&path).unwrap();
    assert_eq!(events[0].get_file_version(), "brain.Event:2");

    assert_eq!(
        read_scalars(&path).unwrap(),
        vec![
            ("train/loss".to_string(), 1, 2.5),
            ("train/loss".to_string(), 2, f64::from(0.1f32)),
            ("val/acc".to_string(), 2, f64::from((1.0f64 / 3.0) as f32)),
        ]
    );

    let values: Vec<(&Summary_Value, i64)> = events
        .iter()
        .flat_map(|e| {
            e.get_summary()
                .get_value()
                .iter()
                .map(|v| (v, e.get_step()))
        })
        .collect();
    let by_tag = |tag: &str| {
        values
            .iter()
            .find(|(v, _)| v.get_tag() == tag)
            .unwrap_or_else(|| panic!("no value tagged {tag}"))
            .0
    };

    let h = by_tag("weights").get_histo();
    assert_eq!((h.get_min(), h.get_max()), (0.0, 10.0));
    assert_eq!(h.get_num(), 5.0);
    assert_eq!(h.get_sum(), 14.0);
    assert_eq!(h.get_sum_squares(), 106.0);
    assert_eq!(h.get_bucket().len(), h.get_bucket_limit().len());
    assert_eq!(h.get_bucket().iter().sum::<f64>(), 5.0);
    assert_eq!(*h.get_bucket_limit().last().unwrap(), 10.0);
    assert_eq!(h.get_bucket()[0], 1.0, "0 alone in the first bucket");
    assert_eq!(
        *h.get_bucket().last().unwrap(),
        1.0,
        "max in the last bucket"
    );

    let image = by_tag("maps/classes").get_image();
    assert_eq!((image.get_width(), image.get_height()), (3, 2));
    assert_eq!(image.get_colorspace(), 3);
    assert_eq!(image.get_encoded_image_string(), png_3x2().as_slice());

    let plugin = |tag: &str| {
        let v = by_tag(tag);
        let pd = v.get_metadata().get_plugin_data();
        assert_eq!(pd.get_plugin_name(), "hparams");
        assert_eq!(v.get_tensor().get_dtype(), TensorType::DT_FLOAT);
        let data = HParamsPluginData::parse_from_bytes(pd.get_content()).unwrap();
        assert_eq!(data.get_version(), 0);
        data.data.unwrap()
    };
    match plugin("_hparams_/experiment") {
        HData::experiment(e) => {
            let names: Vec<_> = e.get_hparam_infos().iter().map(|i| i.get_name()).collect();
            assert_eq!(names, ["lr", "model", "pretrained"]);
            assert_eq!(
                e.get_hparam_infos()[2].get_field_type(),
                HParamType::DATA_TYPE_BOOL
            );
            assert_eq!(e.get_metric_infos()[0].get_name().get_tag(), "val/acc");
        }
        other => panic!("{other:?}"),
    }
    match plugin("_hparams_/session_start_info") {
        HData::session_start_info(s) => {
            assert_eq!(s.get_hparams()["lr"].get_number_value(), 0.001);
            assert!(s.get_hparams()["pretrained"].get_bool_value());
            assert_eq!(s.get_hparams()["model"].get_string_value(), "resnet");
        }
        other => panic!("{other:?}"),
    }
    match plugin("_hparams_/session_end_info") {
        HData::session_end_info(s) => assert_eq!(s.get_status(), Status::STATUS_SUCCESS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_writers_in_one_second_get_two_intact_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = EventWriter::create(dir.path()).unwrap();
    let mut b = EventWriter::create(dir.path()).unwrap();
    assert_ne!(a.path(), b.path());
    a.scalar("x", 1, 1.0);
    b.scalar("x", 1, 2.0);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(event_files(dir.path()).len(), 2);
    assert_eq!(read_scalars(a.path()).unwrap(), [("x".to_string(), 1, 1.0)]);
    assert_eq!(read_scalars(b.path()).unwrap(), [("x".to_string(), 1, 2.0)]);
}

#[test]
fn queued_events_stay_off_disk_until_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    let len = std::fs::metadata(w.path()).unwrap().len();
    w.scalar("x", 1, 1.0);
    w.image("img", 1, &png_3x2(), 3, 2);
    assert_eq!(std::fs::metadata(w.path()).unwrap().len(), len);
    assert!(read_scalars(w.path()).unwrap().is_empty());
    let path = w.path().to_path_buf();
    drop(w);
    assert_eq!(
        read_events(&path).unwrap().len(),
        1,
        "only the version event"
    );
}

#[test]
fn resume_truncates_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    w.scalar("x", 1, 1.0);
    let checkpoint = w.flush().unwrap();
    assert_eq!(checkpoint, std::fs::metadata(w.path()).unwrap().len());
    w.scalar("x", 2, 2.0);
    w.scalar("x", 3, 3.0);
    w.flush().unwrap();
    let path = w.path().to_path_buf();
    drop(w);

    let mut w = EventWriter::resume(&path, checkpoint).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), checkpoint);
    w.scalar("x", 2, 20.0);
    let len = w.flush().unwrap();
    assert_eq!(len, std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        read_scalars(&path).unwrap(),
        [("x".to_string(), 1, 1.0), ("x".to_string(), 2, 20.0)]
    );
    assert_eq!(
        read_events(&path).unwrap()[0].get_file_version(),
        FILE_VERSION
    );
}

#[test]
fn resume_rejects_a_longer_length_or_a_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    w.scalar("x", 1, 1.0);
    let len = w.flush().unwrap();
    let path = w.path().to_path_buf();
    drop(w);
    let err = EventWriter::resume(&path, len + 1).unwrap_err();
    assert!(
        matches!(err, TensorboardError::ShorterThanResume { .. }),
        "{err}"
    );
    let err = EventWriter::resume(&path, len - 3).unwrap_err();
    assert!(matches!(err, TensorboardError::Corrupt { .. }), "{err}");
    // Neither failure touched the file.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    // Resuming at 0 leaves a readable file with only the version event.
    EventWriter::resume(&path, 0).unwrap();
    assert_eq!(read_events(&path).unwrap().len(), 1);
}

#[test]
fn a_flipped_byte_is_caught_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    let first = w.flush().unwrap();
    w.scalar("x", 1, 1.0);
    w.flush().unwrap();
    let path = w.path().to_path_buf();
    drop(w);
    let clean = std::fs::read(&path).unwrap();

    // One byte in the second record's data, then one in its length.
    for (at, what) in [
        (first as usize + 20, "data CRC"),
        (first as usize + 1, "length CRC"),
    ] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte {first}")), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    // A torn tail (writer killed mid-record) is an error too.
    std::fs::write(&path, &clean[..clean.len() - 2]).unwrap();
    let err = read_events(&path).unwrap_err().to_string();
    assert!(err.contains(&format!("at byte {first}")), "{err}");
}

#[test]
fn a_removed_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let err = EventWriter::create(&gone).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
    // A path that is a file, not a directory: fails even for root, unlike a read-only directory.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = EventWriter::create(&file).unwrap_err();
    assert!(matches!(err, TensorboardError::Io { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn a_readonly_directory_is_an_error_not_a_panic() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let result = EventWriter::create(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root ignores directory permissions; there is nothing to check then.
    if unsafe { libc::geteuid() } != 0 {
        let err = result.unwrap_err();
        assert!(matches!(err, TensorboardError::Io { .. }), "{err}");
    }
}

#[test]
fn a_failed_write_is_an_error_and_the_events_stay_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    let len = w.flush().unwrap();
    // Swap in a read-only handle so the write fails as a full or vanished disk would.
    let readonly = File::open(w.path()).unwrap();
    let good = std::mem::replace(&mut w.file, readonly);
    w.scalar("x", 1, 1.0);
    let err = w.flush().unwrap_err().to_string();
    assert!(err.contains(&w.path().display().to_string()), "{err}");
    assert_eq!(std::fs::metadata(w.path()).unwrap().len(), len);
    w.file = good;
    assert!(w.flush().unwrap() > len);
    assert_eq!(read_scalars(w.path()).unwrap(), [("x".to_string(), 1, 1.0)]);
}

/// Writes a sample run into `$GEOEXP_TB_SAMPLE_DIR` for `tests/tensorboard_check.py`:
/// `GEOEXP_TB_SAMPLE_DIR=/tmp/tb cargo test --lib tensorboard -- --ignored`.
#[test]
#[ignore = "writes a sample for the Python checker; needs GEOEXP_TB_SAMPLE_DIR"]
fn write_sample_for_python_check() {
    let dir = PathBuf::from(std::env::var("GEOEXP_TB_SAMPLE_DIR").unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_sample(&dir);
    // A second file in the same run directory, as a resumed run might leave.
    let mut w = EventWriter::create(&dir).unwrap();
    w.scalar("train/loss", 3, 0.05);
    w.flush().unwrap();
    eprintln!("wrote {} and {}", path.display(), w.path().display());
}
