//! Reading `data.csv`: columns by header name, every value checked.
//!
//! Real files come in more than one shape — `,uuid,latitude,longitude` (a pandas index
//! column first) and `,Unnamed: 0,sample_longitude,sample_latitude,row_idx,status,radius,
//! latitude,longitude,panorama_id,uuid` — so columns are found by their exact (trimmed,
//! case-insensitive) names and everything else is ignored.

use std::collections::HashMap;
use std::path::Path;

use super::error::DatasetError;

/// One row of `data.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvRow {
    /// 1-based line in the file.
    pub line: u64,
    /// Location id; also its image folder name.
    pub uuid: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// Reads and checks every row of a `data.csv`.
///
/// # Errors
/// A missing column, an unparsable or out-of-range coordinate, an unusable uuid, or a uuid
/// listed twice — each naming the file and line.
pub fn read_data_csv(path: &Path) -> Result<Vec<CsvRow>, DatasetError> {
    let file = path.to_path_buf();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_error(&file, &e))?;
    // Bytes, not strings: columns geoexp does not read may hold anything.
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| csv_error(&file, &e))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let column = |name: &'static str| {
        let at: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim().eq_ignore_ascii_case(name))
            .map(|(i, _)| i)
            .collect();
        match at[..] {
            [one] => Ok(one),
            [] => Err(DatasetError::MissingColumn {
                file: file.clone(),
                column: name,
                found: headers.clone(),
            }),
            [first, second, ..] => Err(DatasetError::Csv {
                file: file.clone(),
                line: 1,
                message: format!(
                    "column `{name}` appears twice, as columns {} and {}; which one holds \
                     the data is ambiguous",
                    first + 1,
                    second + 1
                ),
            }),
        }
    };
    let (uuid_col, lat_col, lon_col) = (column("uuid")?, column("latitude")?, column("longitude")?);
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| csv_error(&file, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        let text = |col: usize, name: &'static str| -> Result<String, DatasetError> {
            let raw = record.get(col).unwrap_or(b"");
            std::str::from_utf8(raw)
                .map(|t| t.to_owned())
                .map_err(|_| DatasetError::BadValue {
                    file: file.clone(),
                    line,
                    uuid: String::from_utf8_lossy(record.get(uuid_col).unwrap_or(b"")).into_owned(),
                    column: name,
                    value: String::from_utf8_lossy(raw).into_owned(),
                    problem: "is not valid UTF-8",
                })
        };
        let uuid = text(uuid_col, "uuid")?;
        let bad =
            |column: &'static str, value: &str, problem: &'static str| DatasetError::BadValue {
                file: file.clone(),
                line,
                uuid: uuid.clone(),
                column,
                value: value.to_owned(),
                problem,
            };
        if uuid.is_empty() || uuid.contains(['/', '\\']) || uuid == "." || uuid == ".." {
            return Err(bad("uuid", &uuid, "is not usable as an image folder name"));
        }
        let coordinate = |col: usize, name: &'static str, limit: f64| {
            let raw = text(col, name)?;
            let raw = raw.as_str();
            let value: f64 = raw.parse().map_err(|_| bad(name, raw, "is not a number"))?;
            if !value.is_finite() || value.abs() > limit {
                return Err(bad(
                    name,
                    raw,
                    if limit == 90.0 {
                        "is outside [-90, 90]"
                    } else {
                        "is outside [-180, 180]"
                    },
                ));
            }
            Ok(value)
        };
        let latitude = coordinate(lat_col, "latitude", 90.0)?;
        let longitude = coordinate(lon_col, "longitude", 180.0)?;
        if let Some(first) = seen.insert(uuid.clone(), line) {
            return Err(DatasetError::DuplicateUuid {
                uuid,
                first: (file.clone(), first),
                second: (file.clone(), line),
            });
        }
        rows.push(CsvRow {
            line,
            uuid,
            latitude,
            longitude,
        });
    }
    Ok(rows)
}

fn csv_error(file: &Path, e: &csv::Error) -> DatasetError {
    match e.kind() {
        csv::ErrorKind::Io(io) => DatasetError::Io {
            action: "reading",
            path: file.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        _ => DatasetError::Csv {
            file: file.to_path_buf(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<CsvRow>, DatasetError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        read_data_csv(&path)
    }

    #[test]
    fn both_real_header_shapes_load() {
        let a = read(",uuid,latitude,longitude\n0,u1,45.5,18.5\n1,u2,45.1,14.8\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[1].uuid.as_str(), a[1].latitude, a[1].longitude),
            ("u2", 45.1, 14.8)
        );
        let b = read(concat!(
            ",Unnamed: 0,sample_longitude,sample_latitude,row_idx,status,radius,latitude,longitude,panorama_id,uuid\n",
            "0,0,18.0,45.0,3,OK,50,45.55,18.54,pano,u9\n"
        ))
        .unwrap();
        assert_eq!(
            (b[0].uuid.as_str(), b[0].latitude, b[0].longitude),
            ("u9", 45.55, 18.54)
        );
        assert_eq!(b[0].line, 2);
    }

    fn read_bytes(bytes: &[u8]) -> Result<Vec<CsvRow>, DatasetError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, bytes).unwrap();
        read_data_csv(&path)
    }

    #[test]
    fn columns_geoexp_does_not_read_may_hold_any_bytes() {
        let rows = read_bytes(b"uuid,latitude,longitude,note\nu1,45.5,18.5,caf\xe9\n").unwrap();
        assert_eq!(rows[0].uuid, "u1");
        // In a column it reads, the same byte is an error naming line and column.
        let e = read_bytes(b"uuid,latitude,longitude\nu\xe9,45.5,18.5\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(":2:") && msg.contains("not valid UTF-8"),
            "{msg}"
        );
    }

    #[test]
    fn a_column_named_twice_is_an_error_naming_both() {
        let e = read("uuid,latitude,longitude,latitude\nu1,45,18,44\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("column `latitude` appears twice, as columns 2 and 4"),
            "{msg}"
        );
    }

    #[test]
    fn bad_rows_name_the_line_and_uuid() {
        let e = read("uuid,latitude,longitude\nu1,45,18\nu2,north,18\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(":3:") && msg.contains("\"u2\"") && msg.contains("not a number"),
            "{msg}"
        );
        let e = read("uuid,latitude,longitude\nu1,95,18\n").unwrap_err();
        assert!(e.to_string().contains("outside [-90, 90]"), "{e}");
        let e = read("uuid,latitude,longitude\nu1,45,181\n").unwrap_err();
        assert!(e.to_string().contains("outside [-180, 180]"), "{e}");
        let e = read("uuid,latitude,longitude\n../x,45,18\n").unwrap_err();
        assert!(e.to_string().contains("folder name"), "{e}");
    }

    #[test]
    fn a_missing_column_lists_the_columns_found() {
        let e = read("uuid,lat,longitude\nu1,45,18\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("no `latitude` column") && msg.contains("lat, longitude"),
            "{msg}"
        );
    }

    #[test]
    fn a_uuid_listed_twice_names_both_lines() {
        let e = read("uuid,latitude,longitude\nu1,45,18\nu2,45,18\nu1,44,17\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"u1\"") && msg.contains(":2") && msg.contains(":4"),
            "{msg}"
        );
    }
}
