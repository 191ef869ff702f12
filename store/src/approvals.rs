//! Approval flows, the default flow and approval requests: records outside the model (they
//! never enter a snapshot), written in transactions like the rest, so a request's transition
//! is durable before it is acknowledged and commits with its audit event.

use crate::error::engine;
use crate::store::{Store, not_found};
use crate::tx::Tx;
use crate::{Result, codec, keys};
use pdp::{ApprovalFlow, ApprovalRequest};

impl Tx<'_, '_> {
    pub fn flow(&self, id: &str) -> Result<Option<ApprovalFlow>> {
        keys::check_id("approval flow id", id)?;
        self.get_json("approval flow", &keys::flow(id), id)
    }

    /// Every approval flow, by id, as they stand before this change.
    pub fn flows(&self) -> Result<Vec<ApprovalFlow>> {
        self.scan_json("approval flow", keys::FLOW)
    }

    /// Creates or replaces an approval flow (checked by the caller).
    pub fn put_flow(&mut self, flow: &ApprovalFlow) -> Result<()> {
        keys::check_id("approval flow id", &flow.id)?;
        self.put_json("approval flow", keys::flow(&flow.id), flow)
    }

    /// Deletes an approval flow; [`crate::Error::NotFound`] if there is none.
    pub fn delete_flow(&mut self, id: &str) -> Result<()> {
        keys::check_id("approval flow id", id)?;
        self.remove_existing("approval flow", keys::flow(id), id)
    }

    /// The default approval flow's id; `None`: the built-in flow.
    pub fn default_flow(&self) -> Result<Option<String>> {
        self.get_string(keys::DEFAULT_FLOW)
    }

    /// Sets (or with `None`, clears) the default approval flow.
    pub fn put_default_flow(&mut self, id: Option<&str>) -> Result<()> {
        match id {
            Some(id) => {
                keys::check_id("approval flow id", id)?;
                self.put_raw(keys::DEFAULT_FLOW.to_vec(), id.as_bytes())
            }
            None => self.remove_raw(keys::DEFAULT_FLOW.to_vec()),
        }
    }

    pub fn approval(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        keys::check_id("approval request id", id)?;
        self.get_json("approval request", &keys::approval(id), id)
    }

    /// Creates or replaces an approval request (its transitions are the caller's to check).
    pub fn put_approval(&mut self, request: &ApprovalRequest) -> Result<()> {
        keys::check_id("approval request id", &request.id)?;
        self.put_json("approval request", keys::approval(&request.id), request)
    }

    /// Deletes an approval request (retention); nothing if there is none.
    pub fn delete_approval(&mut self, id: &str) -> Result<()> {
        keys::check_id("approval request id", id)?;
        self.remove_raw(keys::approval(id))
    }
}

impl Store {
    pub fn get_flow(&self, id: &str) -> Result<Option<ApprovalFlow>> {
        keys::check_id("approval flow id", id)?;
        self.get_record("approval flow", &keys::flow(id), id)
    }

    /// Every approval flow, by id.
    pub fn flows(&self) -> Result<Vec<ApprovalFlow>> {
        self.scan_records("approval flow", keys::FLOW)
    }

    /// The default approval flow's id; `None`: the built-in flow.
    pub fn default_flow(&self) -> Result<Option<String>> {
        self.get_string(keys::DEFAULT_FLOW)
    }

    pub fn get_approval(&self, id: &str) -> Result<Option<ApprovalRequest>> {
        keys::check_id("approval request id", id)?;
        self.get_record("approval request", &keys::approval(id), id)
    }

    /// Every approval request, by id (what the approvals service loads on start).
    pub fn approvals(&self) -> Result<Vec<ApprovalRequest>> {
        self.scan_records("approval request", keys::APPROVAL)
    }
}

// Record helpers for records outside the model, keyed `<prefix><id>`.
impl Tx<'_, '_> {
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
        id: &str,
    ) -> Result<Option<T>> {
        match self.get_raw(key)? {
            Some(bytes) => codec::from_json(what, id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn scan_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        prefix: &[u8],
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.scan_raw(prefix) {
            let (key, value) = item?;
            let id = keys::id_of(prefix, &key)?;
            out.push(codec::from_json(what, id, &value)?);
        }
        Ok(out)
    }

    fn put_json<T: serde::Serialize>(
        &mut self,
        what: &'static str,
        key: Vec<u8>,
        value: &T,
    ) -> Result<()> {
        let value = codec::to_json(what, value)?;
        self.put_raw(key, &value)
    }

    fn remove_existing(&mut self, what: &'static str, key: Vec<u8>, id: &str) -> Result<()> {
        if self.get_raw(&key)?.is_none() {
            return Err(not_found(what, id));
        }
        self.remove_raw(key)
    }

    fn get_string(&self, key: &[u8]) -> Result<Option<String>> {
        self.get_raw(key)?
            .map(|bytes| utf8(key, &bytes))
            .transpose()
    }
}

impl Store {
    fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        prefix: &[u8],
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.db().scan_prefix(prefix) {
            let (key, value) = item.map_err(engine)?;
            let id = keys::id_of(prefix, &key)?;
            out.push(codec::from_json(what, id, &value)?);
        }
        Ok(out)
    }

    fn get_string(&self, key: &[u8]) -> Result<Option<String>> {
        self.get_committed(key)?
            .map(|bytes| utf8(key, &bytes))
            .transpose()
    }
}

fn utf8(key: &[u8], bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        crate::Error::Corrupt(format!("`{}` is not UTF-8", String::from_utf8_lossy(key)))
    })
}
