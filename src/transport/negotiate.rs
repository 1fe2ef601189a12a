//! Content negotiation: which media type an answer gets (`Accept`), and whether a POST
//! body is one larder reads (`Content-Type`).
use axum::http::{HeaderMap, header};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// The media type of the answer, chosen from `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Media {
    GraphQLResponse,
    Json,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match self {
            Media::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        }
    }
}

/// `Accept` negotiation: `application/graphql-response+json` when the client names it
/// with the highest weight; `application/json` for legacy clients, wildcards and no
/// Accept at all; `None` (406) when neither is acceptable.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let mut best: Option<(f32, Media)> = None;
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or("").to_ascii_lowercase();
        let q = fields
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => Some(Media::GraphQLResponse),
            // Wildcards get the legacy type: clients that name nothing are legacy clients.
            JSON | "application/*" | "*/*" => Some(Media::Json),
            _ => None,
        };
        if let Some(m) = candidate
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, m));
        }
    }
    best.map(|(_, m)| m)
}

/// Whether the body is declared `application/json` (parameters such as `charset` aside).
/// Anything else is refused: `text/plain` and form bodies are what a browser sends
/// cross-origin without a preflight.
pub fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(JSON))
}

/// Whether a GET comes from a browser that wants a page (GraphiQL) rather than JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn the_highest_weighted_acceptable_type_wins() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(
            negotiate(&accept("application/graphql-response+json")),
            Some(Media::GraphQLResponse)
        );
        assert_eq!(
            negotiate(&accept(
                "application/json;q=0.9, application/graphql-response+json"
            )),
            Some(Media::GraphQLResponse)
        );
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(negotiate(&accept("text/html")), None);
        assert_eq!(negotiate(&accept("application/json;q=0")), None);
    }
}
