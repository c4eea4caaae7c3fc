//! The bot catalogue: one demo bot, in the shape Genesys reads from `GET {base}/bots`.

use serde_json::json;

use crate::ordered::Json;

/// The only bot this BCSP hosts.
pub(crate) const DEMO_BOT_ID: &str = "demo-bot";
/// Its only version.
pub(crate) const DEMO_BOT_VERSION: &str = "1";
/// Languages it understands (compared case-insensitively).
pub(crate) const SUPPORTED_LANGUAGES: [&str; 1] = ["en-us"];
/// The intent every message is matched to.
pub(crate) const INTENT: &str = "Greeting";

fn demo_bot() -> Json {
    let version = Json::object(vec![
        ("version", Json::value(DEMO_BOT_VERSION)),
        (
            "supportedLanguages",
            Json::value(SUPPORTED_LANGUAGES.to_vec()),
        ),
        (
            "intents",
            Json::Array(vec![Json::object(vec![
                ("name", Json::value(INTENT)),
                ("entities", Json::value(json!([]))),
            ])]),
        ),
    ]);
    Json::object(vec![
        ("id", Json::value(DEMO_BOT_ID)),
        ("name", Json::value("Demo Bot")),
        (
            "description",
            Json::value(
                "bcsp-guard's sample bot: repeats what you say; say goodbye to end the session",
            ),
        ),
        ("versions", Json::Array(vec![version])),
    ])
}

/// `GET {base}/bots`.
pub(crate) fn list() -> Json {
    Json::object(vec![("entities", Json::Array(vec![demo_bot()]))])
}

/// `GET {base}/bots/{botId}`.
pub(crate) fn find(id: &str) -> Option<Json> {
    (id == DEMO_BOT_ID).then(demo_bot)
}
