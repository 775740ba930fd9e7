import ArgumentParser
import Foundation
import Gateway

struct ShareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "share",
        abstract: "Create and inspect cloud shares.",
        subcommands: [Create.self, Info.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an empty cloud share at a URL (file:///path, s3://bucket/prefix, filerest://account/share).")

        @Argument(help: "The cloud share URL.") var url: String
        @Option(help: "Smallest chunk in bytes.") var minChunk = 256 << 10
        @Option(help: "Average chunk in bytes (a power of two).") var avgChunk = 1 << 20
        @Option(help: "Largest chunk in bytes.") var maxChunk = 4 << 20
        @Option(help: "Target pack size in bytes.") var packSize = 16 << 20

        func validate() throws {
            guard packSize >= 1 << 20 && packSize <= 1 << 30 else {
                throw ValidationError("--pack-size must be between 1 MiB and 1 GiB")
            }
        }

        func run() async throws {
            do {
                let manifest = try await ShareAdmin.create(url: url, minChunk: minChunk, averageChunk: avgChunk, maxChunk: maxChunk, packSize: packSize)
                print("created share \(ShareAdmin.printable(url)) (format \(manifest.format), chunking \(manifest.chunking), packs of \(manifest.packSize) bytes)")
            } catch {
                throw fail(error)
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a cloud share's format, sizes and dedup ratio.")

        @Argument(help: "The cloud share URL.") var url: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let info = try await ShareAdmin.info(url: url)
                print(json ? try ShareAdmin.json(info) : ShareAdmin.describe(info))
            } catch {
                throw fail(error)
            }
        }
    }
}

struct PutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "put",
        abstract: "Store a local directory tree into a cloud share as one direct cloud edit."
    )

    @Argument(help: "The cloud share URL.") var url: String
    @Argument(help: "The local directory to store.") var directory: String
    @Option(help: "Path inside the share to store the tree under (default: the share root).") var to = ""

    func run() async throws {
        do {
            let report = try await TreeImport.run(url: url, source: directory, destination: to, progress: ProgressPrinter.shared.print)
            ProgressPrinter.shared.finish()
            print(report.summary)
            for skipped in report.skipped.prefix(20) { print("  skipped \(skipped.path): \(skipped.reason)") }
            if report.skipped.count > 20 { print("  … and \(report.skipped.count - 20) more skipped") }
        } catch {
            ProgressPrinter.shared.finish()
            throw fail(error)
        }
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Restore a cloud share's files (at its log head) into a local directory, verifying every chunk."
    )

    @Argument(help: "The cloud share URL.") var url: String
    @Argument(help: "The local directory to write into (created if missing; existing files are not overwritten).") var directory: String

    func run() async throws {
        do {
            let report = try await TreeExport.run(url: url, destination: directory, progress: ProgressPrinter.shared.print)
            ProgressPrinter.shared.finish()
            print(report.summary)
        } catch {
            ProgressPrinter.shared.finish()
            throw fail(error)
        }
    }
}
