import CLinux
import Dispatch
import Fanotify
import Foundation
import Glibc
import Synchronization

/// `tiergate serve` as two processes: this small supervisor, which makes and holds the fanotify group of
/// every tiering endpoint, and the worker it starts (`serve --worker`), which does all the work. When the
/// worker dies (a crash, `kill -9`), the groups and their marks live on in the supervisor, so a reader of
/// a stub blocks until the next worker answers instead of reading holes as zeros; the next worker first
/// answers (EIO) the events the dead one had read, then recalls as before. When the supervisor itself
/// stops the groups go, and with them the recall of stubs, unless systemd keeps them in its descriptor
/// store for the next start (see ``run(executable:arguments:directory:endpoints:notifier:log:)``).
public enum DaemonSupervisor {
    /// The environment variable naming the inherited groups: `endpoint=fd,…`.
    static let groupsVariable = "TIERGATE_FANOTIFY_GROUPS"
    /// The environment variable naming the supervisor's pid (the worker dies with it).
    static let supervisorVariable = "TIERGATE_SUPERVISOR"

    /// True in a worker started by a supervisor.
    public static var isWorker: Bool { ProcessInfo.processInfo.environment[supervisorVariable] != nil }

    /// In a worker: dies with the supervisor (so a `kill -9` of the daemon stops both), and returns the
    /// fanotify groups it inherited, by endpoint id.
    public static func workerGroups() throws -> [UInt32: Int32] {
        let environment = ProcessInfo.processInfo.environment
        guard let supervisor = environment[supervisorVariable].flatMap({ pid_t($0) }) else { return [:] }
        _ = CLinux_die_with_parent()
        guard getppid() == supervisor else { throw GatewayError("the supervisor (pid \(supervisor)) is gone; the worker stops") }
        var groups: [UInt32: Int32] = [:]
        for pair in (environment[groupsVariable] ?? "").split(separator: ",") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let endpoint = UInt32(parts[0]), let fd = Int32(parts[1]) {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                groups[endpoint] = fd
            }
        }
        return groups
    }

    /// The exit status of a worker that stopped to read the configuration again (SIGHUP): the supervisor
    /// starts the next worker at once.
    public static let reloadStatus: Int32 = 78

    /// Runs the supervisor: takes or makes the groups, starts `executable serve --worker arguments…`,
    /// forwards SIGTERM, SIGINT and SIGHUP to it, starts it again when a signal killed it (not when it
    /// exited: an exit status is the daemon's answer) and at once when it stopped for a reload. Returns
    /// the worker's exit status.
    ///
    /// Under systemd the groups also go to the service manager's descriptor store (`FDSTORE=1`, named
    /// `fanotify-<endpoint id>`), and come back in `$LISTEN_FDS` when the service starts again after this
    /// process died: the marks on stubs never go, so their readers wait for the next worker.
    public static func run(executable: String, arguments: [String], directory: StateDirectory, endpoints: [EndpointConfig],
                           notifier: SystemdNotifier? = SystemdNotifier(),
                           log: @escaping @Sendable (String) -> Void) -> Int32 {
        var groups = FanotifyGroups(inherited: SystemdListenedDescriptors.take(), notifier: notifier, log: log)
        groups.provide(for: endpoints)
        ControlRequests.announceDaemon(in: directory)
        defer { ControlRequests.withdrawDaemon(in: directory) }

        let worker = Atomic<Int32>(0)
        let stopping = Atomic<Bool>(false)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        var sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if !stopping.exchange(true, ordering: .sequentiallyConsistent) { notifier?.post("STOPPING=1") }
                let pid = worker.load(ordering: .sequentiallyConsistent)
                if pid > 0 { kill(pid, SIGTERM) }
            }
            source.resume()
            return source
        }
        // SIGHUP (`systemctl reload`) reaches the worker, which stops to be started again with the new
        // configuration; the next worker's READY=1 ends the reload.
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            notifier?.post("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds)")
            let pid = worker.load(ordering: .sequentiallyConsistent)
            if pid > 0 { kill(pid, SIGHUP) }
        }
        hangup.resume()
        sources.append(hangup)
        defer { sources.forEach { $0.cancel() } }

        var environment = ProcessInfo.processInfo.environment
        environment[supervisorVariable] = String(getpid())
        // The passed descriptors were this process's; the watchdog is the worker's to ping.
        for name in SystemdListenedDescriptors.variables { environment[name] = nil }
        if let owner = environment["WATCHDOG_PID"] {
            if pid_t(owner) != getpid() { environment["WATCHDOG_USEC"] = nil }
            environment["WATCHDOG_PID"] = nil
        }
        var restarts: [Date] = []
        while true {
            environment[groupsVariable] = groups.byEndpoint.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            guard let pid = spawn(executable, ["serve", "--worker"] + arguments, environment: environment) else {
                log("cannot start the worker: \(String(cString: strerror(errno)))")
                return 1
            }
            worker.store(pid, ordering: .sequentiallyConsistent)
            if stopping.load(ordering: .sequentiallyConsistent) { kill(pid, SIGTERM) }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            worker.store(0, ordering: .sequentiallyConsistent)
            let signalled = status & 0x7f != 0 && status & 0x7f != 0x7f
            let exitStatus = (status >> 8) & 0xff
            if stopping.load(ordering: .sequentiallyConsistent) || (!signalled && exitStatus != reloadStatus) {
                return signalled ? 128 + (status & 0x7f) : exitStatus
            }
            if signalled && status & 0x7f != SIGHUP {
                log("the worker was killed by signal \(status & 0x7f); starting it again (stubs stay marked: readers wait for it)")
                restarts = restarts.filter { Date().timeIntervalSince($0) < 10 } + [Date()]
                usleep(restarts.count > 5 ? 5_000_000 : 100_000)
            } else {
                // A reload (or a SIGHUP before the worker caught it): new tiering endpoints get groups,
                // groups of endpoints that are gone are closed.
                do {
                    groups.provide(for: try directory.loadConfig()?.endpoints ?? [])
                } catch {
                    log("configuration not reloaded: \(error)")
                }
            }
        }
    }

    /// posix_spawn with SIGTERM, SIGINT and SIGHUP back at their defaults in the child.
    static func spawn(_ executable: String, _ arguments: [String], environment: [String: String]) -> pid_t? {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGHUP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, nil, &attributes, argv, envp)
        if result != 0 {
            errno = result
            return nil
        }
        return pid
    }
}
