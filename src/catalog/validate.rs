//! Input rules for products and categories, checked before any transaction starts.
//! Each failure is `AppError::BadInput` naming the field.
use rust_decimal::Decimal;

use crate::error::AppError;

pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 2_000;
pub const CATEGORY_MAX: usize = 100;
/// Prices up to 100 million, in cents; far above any catalog, far below i64 limits.
pub const PRICE_MAX_CENTS: i64 = 10_000_000_000;

pub fn name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    let len = name.chars().count();
    if len == 0 || len > NAME_MAX {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1 to {NAME_MAX} characters after trimming (got {len})"),
        ));
    }
    Ok(name.to_string())
}

pub fn description(raw: &str) -> Result<String, AppError> {
    let len = raw.chars().count();
    if len > DESCRIPTION_MAX {
        return Err(AppError::bad_input(
            "description",
            format!("description must be at most {DESCRIPTION_MAX} characters (got {len})"),
        ));
    }
    Ok(raw.to_string())
}

/// Exact decimal to integer cents: >= 0, at most two decimals.
pub fn price_cents(field: &'static str, price: Decimal) -> Result<i64, AppError> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err(AppError::bad_input(field, format!("{field} must be >= 0")));
    }
    let normalized = price.normalize();
    if normalized.scale() > 2 {
        return Err(AppError::bad_input(
            field,
            format!("{field} must have at most two decimals"),
        ));
    }
    // Checked: `Decimal` panics when a product leaves its 96-bit range, and any
    // string of 29 digits is a valid input.
    let too_large = || AppError::bad_input(field, format!("{field} must be at most 100000000"));
    let cents = normalized
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or_else(too_large)?;
    match i64::try_from(cents) {
        Ok(c) if c <= PRICE_MAX_CENTS => Ok(c),
        _ => Err(too_large()),
    }
}

pub fn stock(raw: i32) -> Result<i32, AppError> {
    if raw < 0 {
        return Err(AppError::bad_input(
            "stockQuantity",
            "stockQuantity must be >= 0",
        ));
    }
    Ok(raw)
}

/// A category name, and the slug that identifies it ("Home & Garden" -> "home-garden").
pub fn category(raw: &str) -> Result<(String, String), AppError> {
    let name = raw.trim();
    let len = name.chars().count();
    let slug = slug(name);
    if len == 0 || len > CATEGORY_MAX || slug.is_empty() {
        return Err(AppError::bad_input(
            "category",
            format!(
                "category must be 1 to {CATEGORY_MAX} characters with at least one letter or digit"
            ),
        ));
    }
    Ok((name.to_string(), slug))
}

pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Cents back to an exact decimal with two places.
pub fn cents_to_decimal(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn prices_convert_exactly_and_reject_a_third_decimal() {
        assert_eq!(price_cents("price", d("19.99")).unwrap(), 1999);
        assert_eq!(price_cents("price", d("0.10")).unwrap(), 10);
        assert_eq!(price_cents("price", d("5.000")).unwrap(), 500);
        assert_eq!(price_cents("price", d("0")).unwrap(), 0);
        assert!(price_cents("price", d("1.005")).is_err());
        assert!(price_cents("price", d("-0.01")).is_err());
        assert!(price_cents("price", d("100000000.01")).is_err());
        // Near Decimal's limit: the scaling would overflow (it panicked before).
        assert!(price_cents("price", d("1000000000000000000000000000")).is_err());
        assert!(price_cents("price", Decimal::MAX).is_err());
        assert!(price_cents("price", d("0.0000000000000000000000000001")).is_err());
        assert_eq!(cents_to_decimal(1999).to_string(), "19.99");
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(name("  Tea  ").unwrap(), "Tea");
        assert!(name("   ").is_err());
        assert!(name(&"é".repeat(200)).is_ok());
        assert!(name(&"é".repeat(201)).is_err());
    }

    #[test]
    fn categories_get_stable_slugs() {
        assert_eq!(
            category(" Home & Garden ").unwrap(),
            ("Home & Garden".into(), "home-garden".into())
        );
        assert_eq!(slug("Électronique"), "électronique");
        assert!(category("&&").is_err());
    }
}
