//! JWT `exp`: agrees with a reference reader, never panics.

use super::*;

#[derive(Clone, Debug)]
enum Exp {
    Absent,
    Int(i64),
    Text(&'static str),
}

#[derive(Clone, Debug)]
enum Payload {
    Claims {
        exp: Exp,
        before: usize,
        pad: usize,
        ws: (&'static str, &'static str),
    },
    NotObject(&'static str),
    Broken(&'static [u8]),
}

const NOW_S: i64 = 1_700_000_000;
const BROKEN_PAYLOADS: &[&[u8]] = &[
    b"",
    b"{",
    b"{\"exp\":18",
    b"\xff{\"exp\":1800000000}",
    b"{\"exp\":1800000000,}",
];

fn payload() -> impl Strategy<Value = Payload> {
    let exp = prop_oneof![
        1 => Just(Exp::Absent),
        6 => prop_oneof![NOW_S - 5..NOW_S + 5, any::<i64>(), Just(i64::MIN), Just(i64::MAX)].prop_map(Exp::Int),
        3 => select(&[
            "9223372036854775808", "18446744073709551615", "-9223372036854775809",
            "1.8e9", "1800000000.0", "1e3", "\"1800000000\"", "null", "true", "[1800000000]",
            "{\"exp\":1800000000}",
        ][..]).prop_map(Exp::Text),
    ];
    let ws = select(&["", " ", "\n", "\t\r\n "][..]);
    prop_oneof![
        8 => (exp, 0usize..4, prop_oneof![3 => 0usize..16, 1 => 6000usize..6200], (ws.clone(), ws))
            .prop_map(|(exp, before, pad, ws)| Payload::Claims { exp, before, pad, ws }),
        1 => select(&["[1,2]", "1800000000", "\"exp\"", "null", "true"][..]).prop_map(Payload::NotObject),
        1 => select(BROKEN_PAYLOADS).prop_map(Payload::Broken),
    ]
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Claims {
                exp,
                before,
                pad,
                ws,
            } => {
                let mut claims = vec![
                    r#""aud":"https://bcsp.example""#.to_owned(),
                    format!(r#""iat":{NOW_S}"#),
                    r#""nested":{"exp":1}"#.to_owned(),
                    format!(r#""pad":"{}""#, "p".repeat(*pad)),
                ];
                let exp = match exp {
                    Exp::Absent => None,
                    Exp::Int(e) => Some(e.to_string()),
                    Exp::Text(t) => Some((*t).to_owned()),
                };
                if let Some(e) = exp {
                    claims.insert((*before).min(claims.len()), format!(r#""exp":{e}"#));
                }
                format!("{}{{{}}}{}", ws.0, claims.join(","), ws.1).into_bytes()
            }
            Payload::NotObject(t) => t.as_bytes().to_vec(),
            Payload::Broken(b) => b.to_vec(),
        }
    }

    /// What the payload alone makes of the token: its exp, or the error.
    fn reference(&self) -> Result<i64, TokenError> {
        match self {
            Payload::Claims {
                exp: Exp::Int(e), ..
            } if *e > NOW_S => Ok(*e),
            Payload::Claims {
                exp: Exp::Int(_), ..
            } => Err(TokenError::Expired),
            Payload::Claims { .. } => Err(TokenError::NoExp),
            Payload::NotObject(_) | Payload::Broken(_) => Err(TokenError::BadPayload),
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Generated tokens (exp as every JSON shape, claims in any order, sizes around the 8 KiB
    /// limit, line endings): the result is exactly the reference's.
    #[test]
    fn jwt_exp_agrees_with_reference(
        payload in payload(),
        header in prop::collection::vec(any::<u8>(), 1..40),
        signature in prop::collection::vec(any::<u8>(), 1..300),
        ending in select(&["", "\n", "\r\n", "\n\n", "\r", " ", "\t"][..]),
    ) {
        let jwt = format!(
            "{}.{}.{}",
            ref_b64_encode(&header, B64_URL, false),
            ref_b64_encode(&payload.bytes(), B64_URL, false),
            ref_b64_encode(&signature, B64_URL, false),
        );
        let body = format!("{jwt}{ending}");
        // Exactly one trailing `\r\n` or `\n` is forgiven.
        let stripped_len = body.len()
            - match ending {
                "\r\n" => 2,
                "\n" | "\n\n" => 1,
                _ => 0,
            };
        let want = if stripped_len > 8192 {
            Err(TokenError::TooLarge)
        } else if !["", "\n", "\r\n"].contains(&ending) {
            Err(TokenError::BadHeaderBytes)
        } else {
            payload.reference()
        };
        // An empty payload is an empty segment: not a JWT at all.
        let want = match want {
            Err(TokenError::TooLarge | TokenError::BadHeaderBytes) => want,
            _ if payload.bytes().is_empty() => Err(TokenError::NotJwt),
            _ => want,
        };
        let got = parse_identity_token(body.as_bytes(), NOW_S);
        prop_assert_eq!(got.as_ref().map(|t| t.exp()).map_err(|e| *e), want);
        if let Ok(t) = got {
            prop_assert_eq!(t.jwt(), jwt);
        }
    }

    /// Bytes, and generated tokens with a byte changed: never panics, and an accepted token is
    /// visible ASCII, three segments, unexpired.
    #[test]
    fn jwt_parse_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        payload in payload(),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let _ = parse_identity_token(&raw, NOW_S);
        let mut jwt = format!("eyJhbGciOiJSUzI1NiJ9.{}.c2ln", ref_b64_encode(&payload.bytes(), B64_URL, false)).into_bytes();
        let i = at.index(jwt.len());
        jwt[i] = byte;
        if let Ok(t) = parse_identity_token(&jwt, NOW_S) {
            prop_assert!(t.jwt().bytes().all(|b| (0x21..=0x7e).contains(&b)));
            prop_assert_eq!(t.jwt().split('.').count(), 3);
            prop_assert!(t.exp() > NOW_S);
        }
    }
}
