//! Reading a circuit breaker's trip rule from text: `"50%/20"` or
//! `"5 in a row"`. Shared with `#[task]`'s `breaker` option (the macro
//! crate compiles this file too), so both accept exactly the same text.

/// The largest window a breaker may look back over.
pub const MAX_WINDOW: u32 = 1000;

/// Parses a trip rule into `(percent, window)`: trip once at least
/// `percent` % of the last `window` counted outcomes were failures.
/// `"N in a row"` is `(100, N)`: the last N counted outcomes all failed.
///
/// ```
/// assert_eq!(worker_core::parse_breaker("50%/20"), Ok((50, 20)));
/// assert_eq!(worker_core::parse_breaker("5 in a row"), Ok((100, 5)));
/// assert!(worker_core::parse_breaker("0%/20").is_err());
/// assert!(worker_core::parse_breaker("50%/0").is_err());
/// ```
pub fn parse_breaker(text: &str) -> Result<(u8, u32), String> {
    let text = text.trim();
    let hint = "write \"50%/20\" (trip when at least 50% of the last 20 outcomes failed) or \"5 in a row\"";
    if let Some(count) = text.strip_suffix("in a row") {
        let count = window(count, text, hint)?;
        return Ok((100, count));
    }
    let Some((percent, count)) = text.split_once('/') else {
        return Err(format!("invalid breaker rule {text:?}: {hint}"));
    };
    let Some(percent) = percent.trim().strip_suffix('%') else {
        return Err(format!(
            "invalid breaker rule {text:?}: the share of failures ends in %: {hint}"
        ));
    };
    let percent: u8 = match percent.trim().parse() {
        Ok(p) if (1..=100).contains(&p) => p,
        _ => {
            return Err(format!(
                "invalid share of failures in {text:?}: give a whole percentage from 1% to 100%; {hint}"
            ))
        }
    };
    let count = window(count, text, hint)?;
    Ok((percent, count))
}

/// The number of outcomes a rule looks at: 1 to [`MAX_WINDOW`].
fn window(count: &str, text: &str, hint: &str) -> Result<u32, String> {
    match count.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_WINDOW).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid number of outcomes in {text:?}: give a whole number from 1 to {MAX_WINDOW}; {hint}"
        )),
    }
}
