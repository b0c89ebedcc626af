//! Reading the flat arrays the scripts return: a tag, the number of holds the call expired,
//! then the operation's values.

use redis::Value;

use super::StoreError;

/// A script's reply.
#[derive(Debug)]
pub struct Reply(Vec<Value>);

impl Reply {
    /// Wraps a reply; it must have at least the tag and the expired count.
    pub fn new(values: Vec<Value>) -> Result<Self, StoreError> {
        if values.len() < 2 {
            return Err(StoreError::Corrupt(format!("short script reply: {values:?}")));
        }
        Ok(Self(values))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn value(&self, index: usize) -> Result<&Value, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::Corrupt(format!("script reply has no value {index}")))
    }

    /// The tag, value 0.
    pub fn tag(&self) -> Result<&str, StoreError> {
        match self.value(0)? {
            Value::BulkString(bytes) => {
                std::str::from_utf8(bytes).map_err(|_| StoreError::Corrupt("tag is not UTF-8".into()))
            }
            other => Err(StoreError::Corrupt(format!("tag {other:?}"))),
        }
    }

    /// A string value.
    pub fn string(&self, index: usize) -> Result<String, StoreError> {
        match self.value(index)? {
            Value::BulkString(bytes) => {
                String::from_utf8(bytes.clone()).map_err(|_| StoreError::Corrupt("value is not UTF-8".into()))
            }
            Value::SimpleString(s) => Ok(s.clone()),
            Value::Int(n) => Ok(n.to_string()),
            other => Err(StoreError::Corrupt(format!("value {index}: {other:?}"))),
        }
    }

    /// A stream id value (a version).
    pub fn stream_id(&self, index: usize) -> Result<allot_shared::StreamId, StoreError> {
        allot_shared::StreamId::parse(&self.string(index)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// An integer value.
    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.value(index)? {
            Value::Int(n) => Ok(*n),
            Value::BulkString(_) => {
                self.string(index)?.parse().map_err(|_| StoreError::Corrupt(format!("value {index} is not an integer")))
            }
            other => Err(StoreError::Corrupt(format!("value {index}: {other:?}"))),
        }
    }

    /// A non-negative integer stored as a string.
    pub fn parsed_u64(&self, index: usize) -> Result<u64, StoreError> {
        u64::try_from(self.int(index)?).map_err(|_| StoreError::Corrupt(format!("value {index} is negative")))
    }

    /// A nested array of integers.
    pub fn ints(&self, index: usize) -> Result<Vec<i64>, StoreError> {
        match self.value(index)? {
            Value::Array(values) => values
                .iter()
                .map(|v| match v {
                    Value::Int(n) => Ok(*n),
                    other => Err(StoreError::Corrupt(format!("nested value {other:?}"))),
                })
                .collect(),
            other => Err(StoreError::Corrupt(format!("value {index}: {other:?}"))),
        }
    }
}
