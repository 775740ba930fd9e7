import ArgumentParser
import Foundation
import Gateway

struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount an endpoint through FUSE (the mounted cache volume) until SIGTERM or SIGINT; stubs recall on read."
    )
    @OptionGroup var state: StateOptions
    @Argument(help: "The endpoint's id or path.") var endpoint: String
    @Argument(help: "An empty directory to mount on (not a mount point).") var mountpoint: String
    @Flag(help: "Also record the mount point, so that `tiergate serve` mounts it.") var save = false

    func run() async throws {
        do {
            let gateway = try state.open()
            // The loop and its workers have ended when wait returns: then the database closes, here.
            defer { gateway.close() }
            // Absolute, so that what --save records means the same to `serve`, whatever its working directory.
            let mountpoint = mountpoint.hasPrefix("/") ? mountpoint : FileManager.default.currentDirectoryPath + "/" + mountpoint
            var selected = try gateway.endpoint(endpoint)
            if save { selected = try gateway.setMountPoint(endpoint, mountpoint) }
            let session = try await gateway.mount(selected, at: mountpoint)
            // Before the line below: whoever reads it may send SIGTERM at once, which must unmount.
            session.stopOnSignals()
            print("mounted endpoint \(selected.id) (\(selected.path)) at \(mountpoint); SIGTERM or SIGINT unmounts")
            // Whoever waits for the mount (a script, a service manager) must see this line now, also when
            // standard output is a pipe or a file (fully buffered until exit otherwise).
            fflush(nil)
            let status = session.wait()
            print("unmounted \(mountpoint)")
            if status != 0 { throw ExitCode(status) }
        } catch let exit as ExitCode { throw exit } catch { throw fail(error) }
    }
}
