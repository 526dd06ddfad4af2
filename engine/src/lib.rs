//! Host-free core of mcp-policy: strict JSON-RPC parsing, the policy, the
//! decision for each request, rate-limit counters and the answers to refused
//! calls. Nothing here calls proxy-wasm; the host is reached only through the
//! [`store::SharedStore`] and [`store::Clock`] traits, so all of it
//! runs in native unit tests and as wasm32.
//!
//! # Module layers
//!
//! A module uses only modules in lower layers (or its own), so there are no
//! import cycles; `make lint` checks this with `tools/check_engine_layers.py`
//! (`--layers` prints the graph's actual levels). Bottom to top:
//!
//! 1. **Leaf utilities**: [`write`] (JSON string writing), [`text`]
//!    (bounded echo of client text), [`glob`], [`json`] (the strict parser),
//!    [`credentials`], [`store`] (the host traits), [`path_steps`] (`.a[0]`
//!    path steps), [`key_folding`], [`metadata`], [`risk`] (risk categories
//!    and learned hints), [`pins`] (pinned tool definitions: canonical form,
//!    hashes, what lists showed), [`jsonrpc`], [`routing_headers`],
//!    [`regex_prefilter`] (the literals every match of a `regex` needs).
//! 2. **Policy model**: [`caller`] (who is calling), [`conditions`] (the
//!    condition operators), [`policy`] (the validated policy and per-tool
//!    decision), [`config`] (JSON/YAML policy to [`policy::Policy`], with
//!    errors naming the path), [`lint`] (warnings on a valid policy).
//! 3. **Decisions**: [`ratelimit`] (shared-data counters),
//!    [`global_limits`] (rate limit service protocol), [`item_rules`]
//!    (resources and prompts).
//! 4. **Answers and output**: [`answer`] (local replies), [`tools_list`]
//!    (list and stream filtering), [`tunnels`], [`audit`] (audit lines and
//!    [`CallRecord`]).
//! 5. **The request**: [`engine`], which ties the layers together.
//!
//! To add a condition operator, touch [`conditions`] only: the `Op` enum,
//! `Op::NAMES`, `Op::build` (its value, checked at load) and
//! `Condition::eval`, with tests in `config/tests.rs`, `policy/tests.rs`.
//! A rate-limit scope is a [`policy::Scope`] variant (the config's `SCOPES`
//! table names it) whose value per request the [`engine`] reads from
//! [`Scopes`].
//! A helper two layers need belongs in the lower one (or a new leaf module),
//! never in the higher one.

pub mod answer;
pub mod audit;
pub mod caller;
pub mod conditions;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod glob;
pub mod global_limits;
pub mod item_rules;
pub mod json;
pub mod jsonrpc;
pub mod key_folding;
pub mod lint;
pub mod metadata;
pub mod path_steps;
pub mod pins;
pub mod policy;
pub mod ratelimit;
pub mod regex_prefilter;
pub mod risk;
pub mod routing_headers;
pub mod store;
pub mod text;
pub mod tools_list;
pub mod tunnels;
pub mod write;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use engine::{CallRecord, Engine, Forwarded, Scopes, Verdict};
pub use policy::Policy;
