//! Presets and strict mode (SPEC §11), over HTTP.

use crate::api::{Api, Db, Req, Who};

const PRESETS: &str = "[limits]\nallowed_widths = [16, 20, 24, 32]\n[presets.card]\nparams = \"w=24&h=24&fit=cover&fm=png\"\n[presets.wide]\nparams = \"w=32&fm=webp\"\n";

fn etag(r: &reqwest::Response) -> String {
    r.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_preset_is_the_variant_of_its_parameters() {
    let Some(api) = Api::start(Db::Sqlite, PRESETS).await else {
        return;
    };
    let rec = api
        .upload(
            Who::User("alice"),
            "public",
            crate::support::solid_png(64, 48, [200, 30, 30, 255]),
        )
        .await;
    let key = rec["key"].as_str().unwrap();
    // Records list a delivery URL per preset.
    assert!(
        rec["variants"]["card"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{key}?p=card")),
        "{rec}"
    );
    assert!(rec["variants"]["wide"].as_str().is_some(), "{rec}");

    let preset = api.s.get(&format!("/{key}?p=card")).await;
    assert_eq!(preset.status(), 200);
    let spelled = api
        .s
        .get(&format!("/{key}?fm=png&fit=cover&h=24&w=24"))
        .await;
    assert_eq!(etag(&preset), etag(&spelled));
    let img = image::load_from_memory(&preset.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (24, 24));
    // A parameter next to `p` overrides the preset's.
    let r = api.s.get(&format!("/{key}?p=card&w=16")).await;
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (16, 24));
    let (st, v) = api
        .call("GET", &format!("/{key}?p=nope"), Who::Guest, Req::Empty)
        .await;
    assert_eq!(st, 400);
    assert!(v["detail"].as_str().unwrap().contains("`p`"), "{v}");
}

#[tokio::test]
async fn strict_mode_refuses_other_parameters_unless_admin_or_signed() {
    let Some(api) = Api::start(Db::Sqlite, &format!("{PRESETS}[delivery]\nstrict = true\n")).await
    else {
        return;
    };
    let rec = api
        .upload(
            Who::User("alice"),
            "public",
            crate::support::solid_png(64, 48, [30, 30, 200, 255]),
        )
        .await;
    let key = rec["key"].as_str().unwrap().to_string();
    for q in [
        "p=card",
        "p=card&dpr=2&fm=auto",
        "w=32",
        "w=16&dpr=3&fm=auto&v=2",
        "",
    ] {
        let r = api
            .send("GET", &format!("/{key}?{q}"), Who::Guest, Req::Empty)
            .await;
        assert_eq!(r.status(), 200, "{q}");
    }
    for (q, named) in [
        ("w=33", "w"),
        ("h=10", "h"),
        ("w=32&q=10", "q"),
        ("p=card&w=32", "w"),
        ("fm=jpeg", "fm"),
        ("dpr=1.5", "dpr"),
    ] {
        for who in [Who::Guest, Who::User("alice")] {
            let (st, v) = api
                .call("GET", &format!("/{key}?{q}"), who, Req::Empty)
                .await;
            assert_eq!(st, 400, "{q} {who:?}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{named}`")),
                "{q}: {v}"
            );
        }
    }
    // Admins are not limited.
    let r = api
        .send(
            "GET",
            &format!("/{key}?w=20&h=10&fit=fill&fm=png"),
            Who::Admin,
            Req::Empty,
        )
        .await;
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!((img.width(), img.height()), (20, 10));
}
