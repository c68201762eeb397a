//! A replica's `request-budget` and `request-price` (own settings over the top level's):
//! the price first, since a budget in dollars is turned into requests at it.

use super::fields::Fields;
use super::read::Ctx;
use crate::budget::{parse_budget, parse_price, Prices, RequestBudget};
use crate::config::model::ConfigError;

/// The budget and prices of a replica whose own settings are `own` over `global`'s.
pub(super) fn request_settings(
    ctx: &Ctx,
    own: &Fields,
    global: &Fields,
) -> Result<(Option<RequestBudget>, Prices), ConfigError> {
    let mut prices = Prices::default();
    if let Some((at, text)) = setting(own, global, "request-price") {
        prices.class_a_nanos = parse_price(text).map_err(|e| ctx.err(&at, e))?;
    }
    let budget = match setting(own, global, "request-budget") {
        Some((at, text)) => Some(parse_budget(text, &prices).map_err(|e| ctx.err(&at, e))?),
        None => None,
    };
    Ok((budget, prices))
}

/// The replica's own value of `name`, else the top level's, with the key it came from.
fn setting<'a>(own: &'a Fields, global: &'a Fields, name: &str) -> Option<(String, &'a str)> {
    own.val(name)
        .map(|v| (own.key(name), v))
        .or_else(|| global.val(name).map(|v| (global.key(name), v)))
}
