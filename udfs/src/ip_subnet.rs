//! `ip_subnet(ip TEXT, prefix_len INT) -> TEXT`: the CIDR block of an address.
//!
//! `ip_subnet('10.1.2.3', 16)` is `'10.1.0.0/16'`; IPv6 works the same way. A value that is
//! not an address, or a prefix longer than the address, gives NULL.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IpSubnet {
    signature: Signature,
}

impl IpSubnet {
    pub fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64])],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for IpSubnet {
    fn default() -> Self {
        Self::new()
    }
}

/// The network of `ip` with `prefix` leading bits, as `addr/prefix`.
pub fn subnet(ip: &str, prefix: i64) -> Option<String> {
    let addr: IpAddr = ip.trim().parse().ok()?;
    match addr {
        IpAddr::V4(v4) if (0..=32).contains(&prefix) => {
            let bits = u32::from(v4);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            Some(format!(
                "{}/{prefix}",
                std::net::Ipv4Addr::from(bits & mask)
            ))
        }
        IpAddr::V6(v6) if (0..=128).contains(&prefix) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            Some(format!(
                "{}/{prefix}",
                std::net::Ipv6Addr::from(bits & mask)
            ))
        }
        _ => None,
    }
}

impl ScalarUDFImpl for IpSubnet {
    fn name(&self) -> &str {
        "ip_subnet"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                "The CIDR block of an IPv4 or IPv6 address with prefix_len leading bits; NULL for a bad address.",
                "ip_subnet(ip, prefix_len)",
            )
            .build()
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [ip, prefix] = args.args.as_slice() else {
            return exec_err!("ip_subnet takes (ip, prefix_len)");
        };
        let ips = ip.to_array(rows)?;
        let prefixes = prefix.to_array(rows)?;
        let ips = ips.as_string::<i32>();
        let prefixes = prefixes.as_primitive::<Int64Type>();
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        for i in 0..rows {
            if ips.is_null(i) || prefixes.is_null(i) {
                out.append_null();
                continue;
            }
            out.append_option(subnet(ips.value(i), prefixes.value(i)));
        }
        let array: ArrayRef = Arc::new(out.finish());
        if matches!(
            (ip, prefix),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        ) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_of_v4_and_v6() {
        assert_eq!(subnet("10.1.2.3", 16).as_deref(), Some("10.1.0.0/16"));
        assert_eq!(subnet("10.1.2.3", 32).as_deref(), Some("10.1.2.3/32"));
        assert_eq!(subnet("2001:db8::1", 32).as_deref(), Some("2001:db8::/32"));
        assert_eq!(subnet("nope", 8), None);
        assert_eq!(subnet("10.0.0.1", 33), None);
    }
}
