//! The error pages webob writes for the services' Python stack: Glance's errors, and the 413 oslo.middleware's
//! `sizelimit` answers in front of Keystone and Nova. webob picks HTML, JSON or plain text from the request's `Accept`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// The format webob answers in: the first of `text/html`, `application/json` that `accept` takes, by quality and
/// then in that order; plain text when it takes neither, or when there is no `Accept` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFormat {
    Html,
    Json,
    Plain,
}

impl PageFormat {
    pub fn for_accept(accept: Option<&str>) -> PageFormat {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return PageFormat::Plain };
        let ranges: Vec<(&str, &str, f32)> = accept
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';');
                let media = parts.next()?.trim();
                let (kind, subtype) = media.split_once('/')?;
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((kind.trim(), subtype.trim(), q))
            })
            .collect();
        // The quality of an offer is that of the most specific range matching it.
        let quality = |offer_kind: &str, offer_subtype: &str| {
            ranges
                .iter()
                .filter(|(kind, subtype, _)| {
                    (*kind == "*" || kind.eq_ignore_ascii_case(offer_kind))
                        && (*subtype == "*" || subtype.eq_ignore_ascii_case(offer_subtype))
                })
                .max_by_key(|(kind, subtype, _)| usize::from(*kind != "*") + usize::from(*subtype != "*"))
                .map(|(_, _, q)| *q)
                .filter(|q| *q > 0.0)
        };
        let offers = [(PageFormat::Html, quality("text", "html")), (PageFormat::Json, quality("application", "json"))];
        let mut best: Option<(PageFormat, f32)> = None;
        for (format, q) in offers {
            if let Some(q) = q
                && best.is_none_or(|(_, b)| q > b)
            {
                best = Some((format, q));
            }
        }
        best.map_or(PageFormat::Plain, |(format, _)| format)
    }
}

/// webob's name for a status: RFC 2616's where later RFCs renamed it.
pub fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        416 => "Request Range Not Satisfiable",
        422 => "Unprocessable Entity",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// webob's page for `status` with `explanation`, as `format`.
pub fn error_page(status: StatusCode, explanation: &str, format: PageFormat) -> Response {
    let title = title(status);
    let code = status.as_u16();
    let (content_type, body) = match format {
        PageFormat::Html => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{code} {title}</title>\n </head>\n <body>\n  <h1>{code} {title}</h1>\n  \
                 {explanation}<br /><br />\n\n\n\n </body>\n</html>"
            ),
        ),
        // Python's json.dumps, separators and all; the message keeps the HTML page's line breaks.
        PageFormat::Json => (
            "application/json",
            format!(
                "{{\"message\": {}, \"code\": \"{code} {title}\", \"title\": \"{title}\"}}",
                serde_json::to_string(&format!("{explanation}<br /><br />\n\n\n")).expect("a string serializes")
            ),
        ),
        PageFormat::Plain => ("text/plain; charset=UTF-8", format!("{code} {title}\n\n{explanation}\n\n   ")),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn page(status: StatusCode, explanation: &str, accept: Option<&str>) -> (String, String) {
        let response = error_page(status, explanation, PageFormat::for_accept(accept));
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Bytes captured from Nova 34's sizelimit and Glance 33 (webob 1.8).
    #[tokio::test]
    async fn pages_are_byte_for_byte_webobs_in_each_format() {
        let too_large = "Request is too large. Larger than max_request_body_size (%s).";
        let (ct, body) = page(StatusCode::PAYLOAD_TOO_LARGE, too_large, Some("*/*")).await;
        assert_eq!(ct, "text/html; charset=UTF-8");
        assert_eq!(
            body,
            "<html>\n <head>\n  <title>413 Request Entity Too Large</title>\n </head>\n <body>\n  <h1>413 Request \
             Entity Too Large</h1>\n  Request is too large. Larger than max_request_body_size (%s).<br /><br />\n\n\n\n \
             </body>\n</html>"
        );
        let (ct, body) = page(StatusCode::PAYLOAD_TOO_LARGE, too_large, Some("application/json")).await;
        assert_eq!(ct, "application/json");
        assert_eq!(
            body,
            r#"{"message": "Request is too large. Larger than max_request_body_size (%s).<br /><br />\n\n\n", "code": "413 Request Entity Too Large", "title": "Request Entity Too Large"}"#
        );
        let (ct, body) = page(StatusCode::NOT_FOUND, "No image found with ID abc", None).await;
        assert_eq!(ct, "text/plain; charset=UTF-8");
        assert_eq!(body, "404 Not Found\n\nNo image found with ID abc\n\n   ");
    }

    #[test]
    fn the_format_follows_accept_as_webob_weighs_it() {
        use PageFormat::*;
        for (accept, expected) in [
            (None, Plain),
            (Some(""), Plain),
            (Some("*/*"), Html),
            (Some("application/json"), Json),
            (Some("application/json, */*"), Html),
            (Some("application/json, */*;q=0.5"), Json),
            (Some("text/*;q=0.2, application/*;q=0.9"), Json),
            (Some("text/html;q=0"), Plain),
            (Some("image/png"), Plain),
        ] {
            assert_eq!(PageFormat::for_accept(accept), expected, "{accept:?}");
        }
    }
}
