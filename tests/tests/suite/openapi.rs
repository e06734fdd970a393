//! The OpenAPI description: served without a token at `/v1/openapi.json`,
//! OpenAPI 3.1, and every route it documents exists on the server (the
//! router registers routes only with their description, so every route
//! is documented; see `api::tests`).

use journey_tests::Journeyd;
use serde_json::Value;

/// A value for each path parameter the API has.
fn fill(path: &str) -> String {
    path.replace("{id}", "i-1")
        .replace("{name}", "nothing-here")
        .replace("{action}", "cancel")
        .replace("{tag}", "stable")
        .replace("{channel}", "email")
}

#[test]
fn every_documented_route_exists_and_the_description_is_open() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, description) = journeyd.request_as(None, "GET", "/v1/openapi.json", None);
    assert_eq!(status, 200, "{description}");
    assert_eq!(description["openapi"], "3.1.0", "{description:#}");
    assert_eq!(description["info"]["title"], "journeyd");
    let paths = description["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        assert!(!path.contains('*'), "an OpenAPI path template: {path}");
        for (method, operation) in item.as_object().expect("a path item") {
            operations += 1;
            assert!(
                operation["summary"]
                    .as_str()
                    .is_some_and(|summary| !summary.is_empty()),
                "{method} {path} says what it does"
            );
            assert!(
                operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/ErrorBody",
                "{method} {path} documents its errors"
            );
            let body = matches!(method.as_str(), "post" | "put").then(|| b"{}".to_vec());
            let (status, answer) = journeyd.request(&method.to_uppercase(), &fill(path), body);
            let missing =
                status == 405 || (status == 404 && answer["error"]["message"] == "no such route");
            assert!(
                !missing,
                "{method} {path} is documented but the server has no such route: {status} {answer}"
            );
        }
    }
    // The API as the README and docs describe it, at least.
    assert!(operations >= 40, "{operations} operations");
    for (path, method) in [
        ("/v1/events", "post"),
        ("/v1/customers/{id}/forget", "post"),
        ("/v1/backup", "get"),
        ("/v1/deliveries/{id}", "get"),
    ] {
        assert!(
            description["paths"][path][method].is_object(),
            "{method} {path} is described"
        );
    }
    let security: &Value = &description["components"]["securitySchemes"]["token"];
    assert_eq!(security["scheme"], "bearer", "{security}");
}
