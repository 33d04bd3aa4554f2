//! Which runs of digits in a text are phone numbers: told by the telephony
//! metadata of Google's libphonenumber (through the `phonenumber` crate),
//! not by hand-written shapes. A run written with `+` is a phone wherever
//! the metadata says it is valid; one written nationally is, where it is
//! valid in one of the source's regions (`phone_regions`, by default the
//! platform's home country and the country of the source's time zone).
//! What the metadata does not know as a number of those regions stays.

use std::cell::RefCell;
use std::collections::HashMap;

use phonenumber::country::Id;

/// The regions whose national numbers a source's texts may hold.
#[derive(Debug, Clone)]
pub struct PhoneRegions {
    regions: Vec<Id>,
    /// Verdicts on runs met lately: a chat repeats its customer's number,
    /// and asking the metadata costs tens of microseconds a run.
    verdicts: RefCell<HashMap<Box<[u8]>, bool>>,
}

/// Verdicts remembered; the memo starts over beyond this.
const VERDICTS: usize = 4096;

impl PartialEq for PhoneRegions {
    fn eq(&self, other: &PhoneRegions) -> bool {
        self.regions == other.regions
    }
}

impl Default for PhoneRegions {
    /// Every platform's home country: Colombia (Wolkvox), Vietnam
    /// (CareSoft), the United States (UJET).
    fn default() -> PhoneRegions {
        PhoneRegions::of(vec![Id::CO, Id::VN, Id::US])
    }
}

impl PhoneRegions {
    fn of(regions: Vec<Id>) -> PhoneRegions {
        PhoneRegions {
            regions,
            verdicts: RefCell::new(HashMap::new()),
        }
    }

    /// Regions given as ISO 3166 codes (`US`, `co`); an unknown one is
    /// named in the error.
    pub fn from_codes(codes: &[String]) -> Result<PhoneRegions, String> {
        let mut ids = Vec::new();
        for code in codes {
            let id: Id = code.trim().to_ascii_uppercase().parse().map_err(|_| {
                format!("{code:?} is not a region code (ISO 3166, such as US or CO)")
            })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err("names no region".into());
        }
        Ok(PhoneRegions::of(ids))
    }

    /// A platform's home country, and the country of `zone` if it is
    /// another.
    pub fn for_platform(home: &str, zone: Option<&str>) -> PhoneRegions {
        let mut ids: Vec<Id> = Vec::new();
        ids.extend(home.parse::<Id>().ok());
        if let Some(country) = zone.and_then(zone_country) {
            if !ids.contains(&country) {
                ids.push(country);
            }
        }
        if ids.is_empty() {
            return PhoneRegions::default();
        }
        PhoneRegions::of(ids)
    }

    /// Whether `run` (digits, perhaps a leading `+`, and the spaces,
    /// dashes, dots and brackets people write between groups) is a valid
    /// phone number: international, or national in one of the regions
    /// (also written with the region's country code but no `+`).
    pub fn is_phone(&self, run: &[u8]) -> bool {
        if let Some(&verdict) = self.verdicts.borrow().get(run) {
            return verdict;
        }
        let verdict = self.ask(run);
        let mut verdicts = self.verdicts.borrow_mut();
        if verdicts.len() >= VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(run.into(), verdict);
        verdict
    }

    /// [`PhoneRegions::is_phone`], asking the metadata.
    fn ask(&self, run: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(run) else {
            return false;
        };
        if text.starts_with('+') {
            return phonenumber::parse(None, text).is_ok_and(|n| n.is_valid());
        }
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if self
            .regions
            .iter()
            .any(|region| national(*region, text, &digits))
        {
            return true;
        }
        // `573001234567`: a country code written without its `+`.
        match phonenumber::parse(None, format!("+{digits}")) {
            Ok(number) => {
                number.is_valid()
                    && number
                        .country()
                        .id()
                        .is_some_and(|id| self.regions.contains(&id))
            }
            Err(_) => false,
        }
    }
}

/// Whether `text` is a valid number of `region` written as the region
/// writes its numbers: its national format has the same digits. The
/// metadata would also take a Vietnamese mobile without its leading 0
/// (`387229101`, a ticket number as likely as a phone); the region's own
/// way of writing it has the 0.
fn national(region: Id, text: &str, digits: &str) -> bool {
    let Ok(number) = phonenumber::parse(Some(region), text) else {
        return false;
    };
    if !number.is_valid() {
        return false;
    }
    let written = phonenumber::format(&number)
        .mode(phonenumber::Mode::National)
        .to_string();
    written
        .chars()
        .filter(char::is_ascii_digit)
        .eq(digits.chars())
}

/// The country of a time zone, for the zones of the countries these
/// platforms serve; None for the rest (their regions are then named in
/// `phone_regions`).
fn zone_country(zone: &str) -> Option<Id> {
    Some(match zone {
        "America/Bogota" => Id::CO,
        "Asia/Ho_Chi_Minh" | "Asia/Saigon" => Id::VN,
        "America/New_York"
        | "America/Chicago"
        | "America/Denver"
        | "America/Phoenix"
        | "America/Los_Angeles"
        | "America/Anchorage"
        | "Pacific/Honolulu"
        | "America/Detroit"
        | "America/Indiana/Indianapolis" => Id::US,
        "America/Toronto" | "America/Vancouver" | "America/Edmonton" | "America/Winnipeg"
        | "America/Halifax" | "America/St_Johns" => Id::CA,
        "America/Mexico_City"
        | "America/Monterrey"
        | "America/Tijuana"
        | "America/Cancun"
        | "America/Merida"
        | "America/Chihuahua"
        | "America/Hermosillo" => Id::MX,
        "America/Sao_Paulo" | "America/Manaus" | "America/Fortaleza" | "America/Recife"
        | "America/Bahia" | "America/Belem" => Id::BR,
        "Europe/London" => Id::GB,
        "America/Lima" => Id::PE,
        "America/Guayaquil" => Id::EC,
        "America/Caracas" => Id::VE,
        "America/Panama" => Id::PA,
        "America/Costa_Rica" => Id::CR,
        "America/Guatemala" => Id::GT,
        "America/El_Salvador" => Id::SV,
        "America/Tegucigalpa" => Id::HN,
        "America/Managua" => Id::NI,
        "America/Santo_Domingo" => Id::DO,
        "America/Puerto_Rico" => Id::PR,
        "America/Santiago" => Id::CL,
        "America/Argentina/Buenos_Aires" | "America/Buenos_Aires" => Id::AR,
        "America/Montevideo" => Id::UY,
        "America/Asuncion" => Id::PY,
        "America/La_Paz" => Id::BO,
        "Europe/Madrid" => Id::ES,
        "Asia/Bangkok" => Id::TH,
        "Asia/Manila" => Id::PH,
        "Asia/Jakarta" => Id::ID,
        "Asia/Kuala_Lumpur" => Id::MY,
        "Asia/Singapore" => Id::SG,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(text: &str, regions: &[&str]) -> String {
        let codes: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        let regions = PhoneRegions::from_codes(&codes).unwrap();
        crate::redact::scrub(text, &regions).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn national_and_international_numbers_of_each_region_are_found() {
        let table: &[(&str, &[&str])] = &[
            (
                "US",
                &[
                    "415-555-8196",
                    "415-555-0123",
                    "(415) 555-0123",
                    "+1 415 555 0123",
                    "1 415 555 0123",
                    "415.555.0123",
                ],
            ),
            ("CA", &["(416) 555-0199", "604-555-0147", "+1 604 555 0147"]),
            ("MX", &["55 1234 5678", "+52 55 1234 5678", "33 1234 5678"]),
            (
                "BR",
                &[
                    "(11) 91234-5678",
                    "+55 11 91234-5678",
                    "(21) 2345-6789",
                    "11 91234 5678",
                ],
            ),
            (
                "CO",
                &[
                    "300 123 4567",
                    "+57 300 123 4567",
                    "573001234567",
                    "601 234 5678",
                    "3001234567",
                ],
            ),
            (
                "VN",
                &[
                    "0912 345 678",
                    "+84 912 345 678",
                    "0912345678",
                    "84912345678",
                    "028 3822 1234",
                ],
            ),
            (
                "GB",
                &[
                    "020 7946 0958",
                    "+44 20 7946 0958",
                    "07911 123456",
                    "+44 7911 123456",
                ],
            ),
        ];
        for (region, numbers) in table {
            for number in *numbers {
                let text = format!("llámame al {number}, gracias");
                assert_eq!(
                    scrubbed(&text, &[region]),
                    "llámame al [PHONE], gracias",
                    "{region}: {number}"
                );
            }
        }
        // Any region's number written with `+` is found whatever the
        // source's regions.
        assert_eq!(scrubbed("call +44 20 7946 0958", &["VN"]), "call [PHONE]");
    }

    #[test]
    fn look_alikes_stay_in_every_region() {
        let look_alikes = [
            "total $1,250,000.00 pagado",
            "son 1.250.000 pesos",
            "pedido #4155550123 enviado",
            "orden No. 2024-03-05-0001",
            "fecha 31-12-2024 a las 23:59:59",
            "el 05/03/2024 10:30",
            "tarjeta 4111 1111 1111 1112 rechazada",
            "ticket 387229101",
            "código 12345",
            "versión 2.10.3",
            "IP 192.168.100.200",
            "ref ABC4155550123",
        ];
        for text in look_alikes {
            for region in ["US", "CA", "MX", "BR", "CO", "VN", "GB"] {
                assert_eq!(scrubbed(text, &[region]), text, "{region}: {text}");
            }
        }
        // A national number of a region the source does not serve stays.
        assert_eq!(scrubbed("(11) 91234-5678", &["US"]), "(11) 91234-5678");
    }

    #[test]
    fn regions_come_from_codes_or_the_platform_and_its_zone() {
        assert!(PhoneRegions::from_codes(&["XX".into()]).is_err());
        assert!(PhoneRegions::from_codes(&[]).is_err());
        assert_eq!(
            PhoneRegions::from_codes(&["us".into(), "MX".into(), "US".into()]),
            Ok(PhoneRegions::of(vec![Id::US, Id::MX]))
        );
        assert_eq!(
            PhoneRegions::for_platform("US", Some("America/Mexico_City")),
            PhoneRegions::of(vec![Id::US, Id::MX])
        );
        assert_eq!(
            PhoneRegions::for_platform("CO", Some("America/Bogota")),
            PhoneRegions::of(vec![Id::CO])
        );
    }

    proptest::proptest! {
        #![proptest_config(crate::jsonstream::proptest_config(256))]

        /// Any text, any regions: the scan never panics, keeps every
        /// character outside what it replaces, and replaces only runs of
        /// digits and their separators.
        #[test]
        fn any_text_is_scanned_safely(text in "\\PC{0,40}|[0-9 ()+.-]{0,30}", region in 0usize..7) {
            let region = ["US", "CA", "MX", "BR", "CO", "VN", "GB"][region];
            let out = scrubbed(&text, &[region]);
            let kept: String = out.replace("[PHONE]", "").replace("[CARD]", "").replace("[EMAIL]", "");
            let mut rest = text.chars();
            proptest::prop_assert!(
                kept.chars().all(|c| rest.any(|t| t == c)),
                "{:?} is not what {:?} keeps", out, text
            );
        }
    }
}
