# The wire contract between a container engine and conmond.
#
# Wire-compatible with conmon-rs v1.0: the file ID, the interface and every
# struct are named and nested as there, so their derived type IDs, method
# ordinals and field layouts are identical. Evolution rules:
#   * never renumber or retype a field; retire one by renaming it `xxxOld`
#     and turning it into `:Void`;
#   * new fields and methods only at the end, with new ordinals;
#   * every request carries `metadata` (W3C trace context travels there).
@0xffaaf7385bc4adad;

interface Conmon {
    # Liveness probe and build information.
    version @0 (request: VersionRequest) -> (response: VersionResponse);

    struct VersionRequest {
        verbose @0 :Bool;        # also fill in `cargoTree`
        metadataOld @1 :Void;    # was :Data up to conmon-rs v0.8
        metadata @2 :Metadata;
    }

    struct VersionResponse {
        processId @0 :UInt32;    # PID of the serving daemon
        version @1 :Text;        # semver
        tag @2 :Text;
        commit @3 :Text;
        buildDate @4 :Text;
        target @5 :Text;
        rustVersion @6 :Text;
        cargoVersion @7 :Text;
        cargoTree @8 :Text;      # empty unless `verbose`
        metadata @9 :Void;
    }

    # Runs `<runtime> create` and supervises the container until it exits.
    createContainer @1 (request: CreateContainerRequest) -> (response: CreateContainerResponse);

    struct CreateContainerRequest {
        id @0 :Text;
        bundlePath @1 :Text;
        terminal @2 :Bool;
        stdin @3 :Bool;
        exitPaths @4 :List(Text);
        oomExitPaths @5 :List(Text);
        logDrivers @6 :List(LogDriver);
        cleanupCmd @7 :List(Text);
        globalArgs @8 :List(Text);   # before the `create` subcommand
        commandArgs @9 :List(Text);  # after `--pid-file <file>`
        metadataOld @10 :Void;
        metadata @11 :Metadata;
        envVars @12 :TextTextMap;    # added to the runtime's environment
        cgroupManager @13 :CgroupManager;
        additionalFds @14 :List(UInt64);
        leakFds @15 :List(UInt64);
    }

    struct LogDriver {
        type @0 :Type;
        path @1 :Text;
        maxSize @2 :UInt64;          # bytes; 0 means unlimited

        enum Type {
            containerRuntimeInterface @0;
            json @1;
            journald @2;
        }
    }

    # The zero value is `systemd`, which adds `--systemd-cgroup`.
    enum CgroupManager {
        systemd @0;
        cgroupfs @1;
    }

    struct CreateContainerResponse {
        containerPid @0 :UInt32;
    }

    # Runs a command in a running container and returns its output.
    execSyncContainer @2 (request: ExecSyncContainerRequest) -> (response: ExecSyncContainerResponse);

    struct ExecSyncContainerRequest {
        id @0 :Text;
        timeoutSec @1 :UInt64;       # 0 means no timeout
        command @2 :List(Text);
        terminal @3 :Bool;
        metadataOld @4 :Void;
        metadata @5 :Metadata;
        envVars @6 :TextTextMap;
        cgroupManager @7 :CgroupManager;
    }

    struct ExecSyncContainerResponse {
        exitCode @0 :Int32;
        stdout @1 :Data;
        stderr @2 :Data;
        timedOut @3 :Bool;
    }

    attachContainer @3 (request: AttachRequest) -> (response: AttachResponse);

    struct AttachRequest {
        id @0 :Text;
        socketPath @1 :Text;
        execSessionId @2 :Text;
        stopAfterStdinEof @3 :Bool;
        metadataOld @4 :Void;
        metadata @5 :Metadata;
    }

    struct AttachResponse {
    }

    reopenLogContainer @4 (request: ReopenLogRequest) -> (response: ReopenLogResponse);

    struct ReopenLogRequest {
        id @0 :Text;
        metadataOld @1 :Void;
        metadata @2 :Metadata;
    }

    struct ReopenLogResponse {
    }

    setWindowSizeContainer @5 (request: SetWindowSizeRequest) -> (response: SetWindowSizeResponse);

    struct SetWindowSizeRequest {
        id @0 :Text;
        width @1 :UInt16;            # columns
        height @2 :UInt16;           # rows
        metadataOld @3 :Void;
        metadata @4 :Metadata;
    }

    struct SetWindowSizeResponse {
    }

    createNamespaces @6 (request: CreateNamespacesRequest) -> (response: CreateNamespacesResponse);

    struct CreateNamespacesRequest {
        metadataOld @0 :Void;
        namespaces @1 :List(Namespace);
        uidMappings @2 :List(Text);
        gidMappings @3 :List(Text);
        basePath @4 :Text;
        podId @5 :Text;
        metadata @6 :Metadata;
        # Appended by conmond (not in conmon-rs): namespaced sysctls to set in the new namespaces
        # (`net.*` needs net, `kernel.shm*`/`kernel.msg*`/`kernel.sem`/`fs.mqueue.*` ipc,
        # `kernel.hostname`/`kernel.domainname` uts). A client sending them must also send
        # `namespaces` (an empty list if need be): a request whose slot 0 is null and that has one
        # pointer more than conmon-rs v1.0's is read in the pre-1.0 layout.
        sysctls @7 :TextTextMap;
    }

    enum Namespace {
        ipc @0;
        net @1;
        pid @2;
        user @3;
        uts @4;
    }

    struct CreateNamespacesResponse {
        namespaces @0 :List(NamespaceResponse);
    }

    struct NamespaceResponse {
        type @0 :Namespace;
        path @1 :Text;
    }

    startFdSocket @7 (request: StartFdSocketRequest) -> (response: StartFdSocketResponse);

    struct StartFdSocketRequest {
        metadata @0 :Metadata;
    }

    struct StartFdSocketResponse {
        path @0 :Text;
    }

    using Metadata = TextTextMap;
    using TextTextMap = List(TextTextMapEntry);

    struct TextTextMapEntry {
        key @0 :Text;
        value @1 :Text;
    }

    serveExecContainer @8 (request: ServeExecContainerRequest) -> (response: ServeExecContainerResponse);

    struct ServeExecContainerRequest {
        metadata @0 :Metadata;
        id @1 :Text;
        command @2 :List(Text);
        tty @3 :Bool;
        stdin @4 :Bool;
        stdout @5 :Bool;
        stderr @6 :Bool;
        cgroupManager @7 :CgroupManager;
    }

    struct ServeExecContainerResponse {
        url @0 :Text;
    }

    serveAttachContainer @9 (request: ServeAttachContainerRequest) -> (response: ServeAttachContainerResponse);

    struct ServeAttachContainerRequest {
        metadata @0 :Metadata;
        id @1 :Text;
        stdin @2 :Bool;
        stdout @3 :Bool;
        stderr @4 :Bool;
    }

    struct ServeAttachContainerResponse {
        url @0 :Text;
    }

    servePortForwardContainer @10 (request: ServePortForwardContainerRequest) -> (response: ServePortForwardContainerResponse);

    struct ServePortForwardContainerRequest {
        metadata @0 :Metadata;
        netNsPath @1 :Text;
    }

    struct ServePortForwardContainerResponse {
        url @0 :Text;
    }
}
