import ArgumentParser
import Foundation
import Gateway

/// `tiergate store`: stores defined once by name, which endpoints' shares refer to (`store:NAME/prefix`).
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Define, list and remove the stores that endpoints' shares refer to by name.",
        discussion: """
        An endpoint added with `--share store:NAME/prefix` uses that prefix of the store NAME. Pointing NAME \
        at another URL (the same objects copied elsewhere with `tiergate share copy`) moves every such endpoint \
        at once: a running daemon opens the share there at its next pass, after checking that it is the same \
        share. To move one live share and every server with it, use `tiergate share move`. See docs/backends.md.
        """,
        subcommands: [Set.self, List.self, Remove.self]
    )

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Define a store, or point it at another URL.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The store's name (letters, digits, '-', '_', '.').") var name: String
        @Argument(help: "Its URL: file:///path, s3://bucket/prefix?endpoint=…, filerest://account/share?endpoint=….") var url: String

        func run() async throws {
            do {
                try state.directory.setStore(name, url: url)
                print("store \(name): \(ShareAdmin.printable(url))")
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the stores.")
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let stores = try state.directory.stores().mapValues(ShareAdmin.printable)
                if json { try printJSON(stores); return }
                if stores.isEmpty { print("no stores defined (add one with `tiergate store set NAME URL`)") }
                for (name, url) in stores.sorted(by: { $0.key < $1.key }) { print("\(name)  \(url)") }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a store no endpoint uses.")
        @OptionGroup var state: StateOptions
        @Argument(help: "The store's name.") var name: String

        func run() async throws {
            do {
                try state.directory.removeStore(name)
                print("store \(name) removed")
            } catch {
                throw fail(error)
            }
        }
    }
}
