//! The pieces every report page is built from: escaping, tables, embedded images (data
//! URIs) and the page shell with its stylesheet and the one small script (sortable
//! tables). Nothing refers to the network, so a report opens from a mail attachment.

use std::fmt::Write;

/// `s` with `& < > " '` escaped, safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An `<img>` showing `bytes` (of MIME type `mime`) from a data URI.
pub fn img(mime: &str, bytes: &[u8], alt: &str, class: &str) -> String {
    format!(
        r#"<img class="{class}" alt="{}" src="data:{mime};base64,{}">"#,
        escape(alt),
        base64(bytes)
    )
}

/// A table cell: its text and, for numbers, the value tests and sorting read.
#[derive(Clone, Debug)]
pub enum Cell {
    /// Escaped text.
    Text(String),
    /// A number shown as `shown`, with the exact value in `data-value`.
    Number(f64, String),
    /// Markup inserted as is (images, links built by the caller).
    Raw(String),
}

impl Cell {
    /// Text.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A number with about four significant digits.
    pub fn number(v: f64) -> Cell {
        Cell::Number(v, number(v))
    }
}

/// About four significant digits, without an exponent for ordinary magnitudes.
pub fn number(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e9 {
        return format!("{v:.0}");
    }
    crate::track::heatmap::format_value(v)
}

/// A `<table>` with a header row; `id` names it for tests and links.
pub fn table(id: &str, header: &[&str], rows: &[Vec<Cell>]) -> String {
    table_with_classes(id, header, rows, |_| None)
}

/// [`table`], with a CSS class for some rows (row index → class).
pub fn table_with_classes(
    id: &str,
    header: &[&str],
    rows: &[Vec<Cell>],
    class: impl Fn(usize) -> Option<&'static str>,
) -> String {
    let mut out = format!(r#"<table id="{}" class="sortable"><thead><tr>"#, escape(id));
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (i, row) in rows.iter().enumerate() {
        match class(i) {
            Some(c) => {
                let _ = write!(out, r#"<tr class="{c}">"#);
            }
            None => out.push_str("<tr>"),
        }
        for cell in row {
            match cell {
                Cell::Text(s) => {
                    let _ = write!(out, "<td>{}</td>", escape(s));
                }
                Cell::Number(v, shown) => {
                    let _ = write!(
                        out,
                        r#"<td class="num" data-value="{v}">{}</td>"#,
                        escape(shown)
                    );
                }
                Cell::Raw(s) => {
                    let _ = write!(out, "<td>{s}</td>");
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A `<section>` with an id and a heading.
pub fn section(id: &str, heading: &str, body: &str) -> String {
    format!(
        r#"<section id="{}"><h2>{}</h2>{body}</section>"#,
        escape(id),
        escape(heading)
    )
}

/// A whole page: `title` in `<title>` and `<h1>`, `lead` under it, then `body`.
pub fn page(title: &str, lead: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="geoexp {version}">
<title>{t}</title><style>{STYLE}</style></head>
<body><header><h1>{t}</h1><p class="lead">{lead}</p></header>
<main>{body}</main>
<footer>Written by geoexp {version}. Self-contained: no network needed. Click a column heading to sort.</footer>
<script>{SCRIPT}</script></body></html>
"#,
        t = escape(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}\
header,main,footer{max-width:1240px;margin:0 auto;padding:0 20px}\
h1{font-size:22px;margin:18px 0 4px}h2{font-size:17px;margin:0 0 10px}\
.lead{color:#555;margin:0 0 12px}\
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:14px 16px;margin:14px 0;overflow-x:auto}\
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
tr.default td{color:#888}code{font-size:12px}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #eee}\
.chart-title{font-size:13px;font-weight:600}.tick,.legend{font-size:10px;fill:#444}.axis-label{font-size:11px;fill:#444}\
.maps{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.map{width:100%;height:auto;border:1px solid #eee}figure{margin:0;flex:1 1 380px;max-width:600px}figcaption{color:#555;font-size:12px}\
.thumb{width:64px;height:64px;object-fit:cover;margin-right:2px;image-rendering:auto}\
.hit{color:#2e7d32}.ran{color:#b26a00}.failed{color:#c62828}\
td.heat{text-align:center;min-width:80px}tr.best td{font-weight:600}\
footer{color:#777;font-size:12px;padding:10px 20px 30px}";

/// Sorts a table by the clicked column: numbers by `data-value`, text alphabetically.
const SCRIPT: &str = "\
document.querySelectorAll('table.sortable').forEach(function(table){\
var heads=table.querySelectorAll('th');\
heads.forEach(function(th,col){th.addEventListener('click',function(){\
var body=table.tBodies[0];if(!body)return;\
var up=th.getAttribute('data-sort')!=='asc';\
heads.forEach(function(h){h.removeAttribute('data-sort');});th.setAttribute('data-sort',up?'asc':'desc');\
var rows=Array.prototype.slice.call(body.rows);\
rows.sort(function(a,b){var x=a.cells[col],y=b.cells[col];if(!x||!y)return 0;\
var p=x.getAttribute('data-value'),q=y.getAttribute('data-value');\
var r=(p!==null&&q!==null)?(parseFloat(p)-parseFloat(q)):x.textContent.localeCompare(y.textContent);\
return up?r:-r;});\
rows.forEach(function(r){body.appendChild(r);});});});});";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let t = table("t", &["k<"], &[vec![Cell::text("<script>")]]);
        assert!(t.contains("k&lt;") && t.contains("&lt;script&gt;") && !t.contains("<script>"));
    }

    #[test]
    fn numbers_keep_their_exact_value_for_sorting() {
        let t = table("t", &["km"], &[vec![Cell::number(17.53282733381788)]]);
        assert!(
            t.contains(r#"data-value="17.53282733381788">17.53<"#),
            "{t}"
        );
        assert_eq!(number(150.0), "150");
    }
}
