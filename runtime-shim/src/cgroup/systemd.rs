//! systemd: a transient scope for the monitor, as CRI-O makes one for conmon
//! (`StartTransientUnit` on the system bus, then waiting for the job's `JobRemoved`).

use std::time::Duration;

use crate::dbus::{Call, Connection, DbusError, SIGNAL, Writer};

/// How long systemd may take to make the scope.
pub const SCOPE_TIMEOUT: Duration = Duration::from_secs(60);

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Why systemd did not make the scope.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// No bus to reach systemd on.
    #[error(
        "cgroup_manager = \"systemd\" needs systemd and its D-Bus system bus, and there is no bus"
    )]
    NoBus(#[source] DbusError),
    /// A bus, but no systemd on it.
    #[error(
        "cgroup_manager = \"systemd\" needs systemd, and {SYSTEMD} is not on the bus at '{address}'"
    )]
    NoSystemd {
        /// The bus address.
        address: String,
        /// The bus's answer.
        #[source]
        source: DbusError,
    },
    /// systemd refused, or the exchange failed.
    #[error("start transient unit {unit} in {slice}")]
    Start {
        /// The scope.
        unit: String,
        /// Its slice.
        slice: String,
        /// Why.
        #[source]
        source: DbusError,
    },
    /// The job ended other than `done`.
    #[error("start transient unit {unit} in {slice}: the job ended '{result}'")]
    Job {
        /// The scope.
        unit: String,
        /// Its slice.
        slice: String,
        /// systemd's job result (`failed`, `timeout`, ...).
        result: String,
    },
}

/// What the scope is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The D-Bus address of systemd's bus.
    pub bus: &'a str,
    /// The unit name (`….scope`).
    pub unit: &'a str,
    /// The slice it goes in.
    pub slice: &'a str,
    /// The process moved into it.
    pub pid: u32,
}

/// Asks systemd for a transient scope holding `scope.pid` and waits until the job is done.
/// Blocking: run it off async threads.
///
/// # Errors
/// No bus, no systemd on it, a refusal, a job that does not end `done`, or no answer within
/// [`SCOPE_TIMEOUT`].
pub fn start_scope(scope: &Scope<'_>) -> Result<(), SystemdError> {
    let failed = |source| SystemdError::Start {
        unit: scope.unit.to_owned(),
        slice: scope.slice.to_owned(),
        source,
    };
    let mut bus = Connection::open(scope.bus, SCOPE_TIMEOUT).map_err(|err| match err {
        DbusError::Address(_) | DbusError::Connect { .. } => SystemdError::NoBus(err),
        err => failed(err),
    })?;
    // Subscribe before starting the job: its end may come right after the reply.
    let rule = format!(
        "type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER}',member='JobRemoved'"
    );
    let mut body = Writer::default();
    body.string(&rule);
    bus.call(&Call {
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member: "AddMatch",
        signature: "s",
        body: body.0,
    })
    .map_err(failed)?;
    let reply = bus
        .call(&Call {
            destination: SYSTEMD,
            path: MANAGER_PATH,
            interface: MANAGER,
            member: "StartTransientUnit",
            signature: "ssa(sv)a(sa(sv))",
            body: start_transient_unit_body(scope),
        })
        .map_err(|err| match err {
            DbusError::Remote { ref name, .. } if no_owner(name) => SystemdError::NoSystemd {
                address: scope.bus.to_owned(),
                source: err,
            },
            err => failed(err),
        })?;
    let job = reply
        .body()
        .string()
        .filter(|_| reply.signature == "o")
        .ok_or_else(|| {
            failed(DbusError::Malformed {
                address: scope.bus.to_owned(),
                reason: "StartTransientUnit did not return a job path",
            })
        })?;
    loop {
        let signal = bus.next_signal().map_err(failed)?;
        if signal.kind != SIGNAL || signal.member != "JobRemoved" || signal.signature != "uoss" {
            continue;
        }
        // (id, job, unit, result)
        let mut fields = signal.body();
        let (Some(_id), Some(removed), Some(_unit), Some(result)) = (
            fields.u32(),
            fields.string(),
            fields.string(),
            fields.string(),
        ) else {
            continue;
        };
        if removed != job {
            continue;
        }
        return if result == "done" {
            Ok(())
        } else {
            Err(SystemdError::Job {
                unit: scope.unit.to_owned(),
                slice: scope.slice.to_owned(),
                result,
            })
        };
    }
}

/// Whether a D-Bus error says the called name has no owner (and none could be activated).
fn no_owner(name: &str) -> bool {
    matches!(
        name,
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner"
    ) || name.starts_with("org.freedesktop.DBus.Error.Spawn.")
}

/// `StartTransientUnit(name, mode, properties, aux)` with CRI-O's scope properties.
fn start_transient_unit_body(scope: &Scope<'_>) -> Vec<u8> {
    let mut body = Writer::default();
    body.string(scope.unit);
    body.string("replace");
    body.array(8, |props| {
        let mut property = |name: &str, signature: &str, value: &dyn Fn(&mut Writer)| {
            props.align(8);
            props.string(name);
            props.signature(signature);
            value(props);
        };
        property("Description", "s", &|w| {
            w.string("runtime-shim pod monitor")
        });
        property("Slice", "s", &|w| w.string(scope.slice));
        property("PIDs", "au", &|w| w.array(4, |w| w.u32(scope.pid)));
        // The monitor may make cgroups below its own (as CRI-O delegates conmon's scope).
        property("Delegate", "b", &|w| w.bool(true));
        property("DefaultDependencies", "b", &|w| w.bool(false));
        // As CRI-O: at shutdown systemd sends SIGPIPE, which the monitor ignores, so it
        // outlives its containers' own stop instead of killing them.
        property("KillSignal", "i", &|w| w.i32(libc::SIGPIPE));
    });
    // No auxiliary units.
    body.array(8, |_| {});
    body.0
}
