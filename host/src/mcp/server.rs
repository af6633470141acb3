//! The MCP server: rmcp's handler for hutch's tools. It lists them, runs
//! each call as its own task (rmcp spawns them, so calls overlap, at most
//! [`limits::CONCURRENT_CALLS`] at once), and writes one audit line per call
//! into the VM's audit log, as `hutch exec` does for a command, whatever
//! became of it (refused arguments and cancellations included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt};
use tokio::sync::Semaphore;

use super::call::{Call, Env};
use super::error::ToolError;
use super::guest_text::meta;
use super::progress::Progress;
use super::vm::{Place, Vm};
use super::{limits, tools};
use crate::audit::{self, What};

/// hutch's MCP server for one agent or VM.
pub struct Server {
    vm: Arc<Vm>,
    place: Place,
    env: Arc<Env>,
    calls: AtomicU64,
    slots: Arc<Semaphore>,
}

impl Server {
    /// A server for `place`, whose commands get `env`.
    pub fn new(place: Place, env: Env) -> Server {
        Server {
            vm: Vm::new(place.clone()),
            place,
            env: Arc::new(env),
            calls: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(limits::CONCURRENT_CALLS)),
        }
    }

    /// Serves the client on `input`/`output` until it leaves.
    pub async fn run<R, W>(self, input: R, output: W) -> Result<(), super::McpError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let running = self.serve((input, output)).await.map_err(|e| super::McpError::Handshake(Box::new(e)))?;
        running.waiting().await?;
        Ok(())
    }

    /// Appends the call's line to the VM's project's audit log, when the VM
    /// has a record (a VM that could not even be created has none; an agent
    /// given by address has no log).
    fn audit(&self, entry: audit::Tool) {
        if let Place::Vm { state, name } = &self.place
            && let Ok(record) = state.load(name)
        {
            audit::Log::for_vm(state, &record).append(What::Tool(entry));
        }
    }

    fn instructions(&self) -> String {
        let what = match &self.place {
            Place::Vm { name, .. } => format!("VM {name}, which hutch manages (it is started at the first call if it is not running)"),
            Place::Agent { addr, .. } => format!("the hutch agent at {addr}"),
        };
        format!(
            "These tools act in {what}: a sandbox where commands may do anything without touching the host. The host's \
             project is at the same path in the VM. Use exec for commands, read_file/write_file/list_dir/glob/search \
             for files, session_* for servers and long jobs, network to see what the VM may reach."
        )
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hutch", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::catalogue()))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let began = Instant::now();
        let seq = self.calls.fetch_add(1, Ordering::Relaxed);
        let progress = Progress::new(&context);
        let call = Call::new(self.vm.clone(), self.env.clone(), progress, context.ct.clone(), &request.name, seq);
        call.audit().tool = meta(&request.name);
        call.audit().client = context.client_info().map(|client| meta(&format!("{} {}", client.name, client.version)));
        let arguments = request.arguments.unwrap_or_default();
        let result = match self.slots.clone().acquire_owned().await {
            Ok(_slot) => tools::dispatch(&request.name, arguments, &call, &self.place).await,
            Err(_) => Err(ToolError::Cancelled),
        };
        let error = match &result {
            Ok(_) | Err(ToolError::Cancelled) => None,
            Err(error) => Some(call.redact(&meta(&error.to_string()))),
        };
        call.progress.finish().await;
        let mut entry = call.into_audit();
        entry.duration_ms = audit::millis(began.elapsed());
        entry.cancelled = matches!(result, Err(ToolError::Cancelled));
        entry.error = error;
        self.audit(entry);
        match result {
            Ok(value) => Ok(CallToolResult::structured(value).into()),
            Err(error) => error.into_result().map(Into::into),
        }
    }
}
