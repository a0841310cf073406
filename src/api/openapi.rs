//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of the API, written by hand.
//! `ROUTES` lists every routed (method, path); a test checks that the document, this list
//! and the real router agree.

use serde_json::{Value, json};

/// Every API route as (method, OpenAPI path).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/images"),
    ("post", "/api/v1/images"),
    ("post", "/api/v1/images/register"),
    ("post", "/api/v1/uploads"),
    ("get", "/api/v1/images/{id}"),
    ("patch", "/api/v1/images/{id}"),
    ("delete", "/api/v1/images/{id}"),
    ("get", "/api/v1/images/{id}/shares"),
    ("post", "/api/v1/images/{id}/shares"),
    ("delete", "/api/v1/shares/{share_id}"),
    ("post", "/api/v1/session"),
    ("post", "/api/v1/cache/purge"),
    ("get", "/api/v1/openapi.json"),
];

fn problem(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn ok_json(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn errors(codes: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|(c, d)| (c.to_string(), problem(d)))
        .collect()
}

fn op(summary: &str, mut responses: serde_json::Map<String, Value>, extra: Value) -> Value {
    for (c, d) in [
        ("401", "invalid or missing credentials"),
        ("429", "rate limited"),
    ] {
        responses.entry(c).or_insert_with(|| problem(d));
    }
    let mut o = json!({"summary": summary, "responses": responses});
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

fn with(
    mut m: serde_json::Map<String, Value>,
    code: &str,
    v: Value,
) -> serde_json::Map<String, Value> {
    m.insert(code.to_string(), v);
    m
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query_param(name: &str, desc: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema})
}

pub fn document() -> Value {
    let image = json!({"$ref": "#/components/schemas/Image"});
    let level = json!({"type": "string", "enum": ["public", "protected", "private"]});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "imgorigin metadata API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Upload, list, tag, delete and share images. See docs/api.md."
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
            "/api/v1/images": {
                "get": op("List images the caller may read, newest first",
                    with(errors(&[("400", "invalid parameter")]), "200", ok_json("a page", json!({"$ref": "#/components/schemas/ImagePage"}))),
                    json!({"parameters": [
                        query_param("owner", "`me` or an identity", json!({"type": "string"})),
                        query_param("level", "access level", json!({"type": "string", "enum": ["public", "protected", "private", "other"]})),
                        query_param("tag", "only images with this tag", json!({"type": "string"})),
                        query_param("limit", "page size, 1..=100 (default 50)", json!({"type": "integer", "minimum": 1, "maximum": 100})),
                        query_param("cursor", "`next_cursor` of the previous page", json!({"type": "string"})),
                    ]})),
                "post": op("Upload an image",
                    with(errors(&[("400", "invalid request"), ("403", "not allowed"), ("413", "larger than limits.max_upload_bytes"), ("415", "not an image format we decode"), ("422", "corrupt image or too many pixels"), ("502", "storage failed"), ("503", "metadata database failed")]), "201", ok_json("the new record", image.clone())),
                    json!({
                        "parameters": [
                            query_param("level", "default public", level.clone()),
                            query_param("filename", "original file name", json!({"type": "string"})),
                            query_param("owner", "admin only: owner identity for protected/private", json!({"type": "string"})),
                        ],
                        "requestBody": {"required": true, "content": {
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}}
                        }}
                    })),
            },
            "/api/v1/images/register": {
                "post": op("Record an object already in storage",
                    with(errors(&[("400", "invalid key"), ("403", "not the owner of the key's prefix"), ("404", "no object at this key"), ("409", "already registered"), ("413", "too large"), ("415", "not an image"), ("422", "corrupt image or too many pixels")]), "201", ok_json("the new record", image.clone())),
                    json!({"requestBody": json_body(json!({"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}, "filename": {"type": "string"}}}))})),
            },
            "/api/v1/uploads": {
                "post": op("A presigned PUT URL for a direct upload (S3 backend only)",
                    with(errors(&[("400", "invalid request"), ("415", "unsupported content type"), ("501", "storage backend has no presigned uploads")]), "200", ok_json("where to PUT", json!({"type": "object", "properties": {
                        "key": {"type": "string"}, "url": {"type": "string"}, "method": {"type": "string"},
                        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                        "expires_at": {"type": "string", "format": "date-time"}, "register": {"type": "string"}}}))),
                    json!({"requestBody": json_body(json!({"type": "object", "required": ["content_type"], "properties": {"level": level.clone(), "content_type": {"type": "string"}, "owner": {"type": "string"}}}))})),
            },
            "/api/v1/images/{id}": {
                "parameters": [path_param("id")],
                "get": op("One record", with(errors(&[("404", "no such image (or not readable)")]), "200", ok_json("the record", image.clone())), json!({})),
                "patch": op("Change filename, tags, description, level (owner, admin); a new level moves the original to that level's prefix",
                    with(errors(&[("400", "invalid body"), ("403", "not the owner"), ("404", "no such image"), ("409", "changed or deleted meanwhile"), ("502", "storage failed")]), "200", ok_json("the updated record", image.clone())),
                    json!({"requestBody": json_body(json!({"type": "object", "properties": {
                        "filename": {"type": "string", "nullable": true},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "description": {"type": "string", "nullable": true},
                        "level": level.clone()}}))})),
                "delete": op("Delete the original, its record, shares and cached variants (owner, admin)",
                    with(errors(&[("403", "not the owner"), ("404", "no such image"), ("502", "storage failed")]), "204", json!({"description": "deleted"})), json!({})),
            },
            "/api/v1/images/{id}/shares": {
                "parameters": [path_param("id")],
                "get": op("Share links of an image (owner, admin)",
                    with(errors(&[("403", "not the owner"), ("404", "no such image")]), "200", ok_json("shares", json!({"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Share"}}}}))), json!({})),
                "post": op("Create a CloudFront-signed share link (owner, admin)",
                    with(errors(&[("400", "invalid expires_in or params"), ("403", "not the owner"), ("404", "no such image"), ("503", "signing not configured")]), "201", ok_json("the link", json!({"type": "object", "properties": {"id": {"type": "string"}, "url": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}}))),
                    json!({"requestBody": json_body(json!({"type": "object", "required": ["expires_in"], "properties": {"expires_in": {"type": "integer", "minimum": 1}, "params": {"type": "string", "description": "transform query, e.g. w=400&fm=webp"}}}))})),
            },
            "/api/v1/shares/{share_id}": {
                "parameters": [path_param("share_id")],
                "delete": op("Revoke a share link (owner, admin)",
                    with(errors(&[("403", "not the owner"), ("404", "no such share")]), "204", json!({"description": "revoked"})), json!({})),
            },
            "/api/v1/session": {
                "post": op("Sign in with a local account ([auth.local]): a local token",
                    with(errors(&[("400", "invalid body"), ("401", "wrong name or password (one body for both)"), ("404", "local accounts not configured"), ("429", "too many failed sign-ins (Retry-After)")]), "200", ok_json("the token", json!({"type": "object", "properties": {
                        "token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "name": {"type": "string"}}}))),
                    json!({"security": [{}], "requestBody": json_body(json!({"type": "object", "required": ["name", "password"], "properties": {"name": {"type": "string"}, "password": {"type": "string", "format": "password"}}}))})),
            },
            "/api/v1/cache/purge": {
                "post": op("Drop cached variants on every instance and invalidate them in CloudFront (admin)",
                    with(errors(&[("400", "give key or prefix"), ("403", "not an admin")]), "200", ok_json("what was purged", json!({"type": "object"}))),
                    json!({"requestBody": json_body(json!({"type": "object", "properties": {"key": {"type": "string"}, "prefix": {"type": "string"}}}))})),
            },
            "/api/v1/openapi.json": {
                "get": op("This document", with(serde_json::Map::new(), "200", ok_json("OpenAPI 3", json!({"type": "object"}))), json!({})),
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
            },
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"}}},
                "Image": image_schema(),
                "ImagePage": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
                    "next_cursor": {"type": "string", "nullable": true}}},
                "Share": {"type": "object", "properties": {
                    "id": {"type": "string"}, "image_id": {"type": "string"},
                    "url": {"type": "string", "nullable": true},
                    "params": {"type": "string", "nullable": true},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "revoked": {"type": "boolean"},
                    "revoked_at": {"type": "string", "format": "date-time", "nullable": true}}}
            }
        }
    })
}

/// An image record: SPEC §6 fields plus the facts of §10 (all null while unknown).
fn image_schema() -> Value {
    let mut props = json!({
        "id": {"type": "string"}, "key": {"type": "string"},
        "level": {"type": "string", "enum": ["public", "protected", "private", "other"]},
        "owner": {"type": "string", "nullable": true},
        "filename": {"type": "string", "nullable": true},
        "content_type": {"type": "string"}, "bytes": {"type": "integer"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "sha256": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string", "nullable": true},
        "state": {"type": "string", "enum": ["ready", "rejected"]},
        "moderation": {"type": "string", "nullable": true, "enum": ["pending", "approved", "flagged"],
            "description": "SPEC §12; null while moderation is off"},
        "rejected_reason": {"type": "string", "description": "only on rejected records"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "url": {"type": "string"}
    });
    // SPEC §10.
    let facts = json!({
        "format": {"type": "string", "nullable": true},
        "display_width": {"type": "integer", "nullable": true, "description": "after EXIF orientation"},
        "display_height": {"type": "integer", "nullable": true},
        "orientation": {"type": "integer", "minimum": 1, "maximum": 8, "nullable": true},
        "animated": {"type": "boolean", "nullable": true},
        "frames": {"type": "integer", "nullable": true},
        "has_alpha": {"type": "boolean", "nullable": true},
        "taken_at": {"type": "string", "nullable": true, "description": "EXIF DateTimeOriginal, RFC 3339 with the EXIF offset when there is one"},
        "camera": {"type": "object", "nullable": true, "properties": {
            "make": {"type": "string", "nullable": true},
            "model": {"type": "string", "nullable": true}}},
        "gps": {"type": "object", "nullable": true, "description": "degrees; only for the owner and admins",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
        "dominant_color": {"type": "string", "nullable": true, "pattern": "^#[0-9a-f]{6}$"},
        "blurhash": {"type": "string", "nullable": true, "description": "4x3 components"}
    });
    if let (Some(p), Some(f)) = (props.as_object_mut(), facts.as_object()) {
        p.extend(f.clone());
    }
    json!({"type": "object", "properties": props})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_exactly_the_routes() {
        let doc = document();
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    found.push((method.clone(), path.clone()));
                }
            }
        }
        let mut want: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        found.sort();
        want.sort();
        assert_eq!(found, want);
    }
}
