/// How a new endpoint on a tiering-enabled server receives the share's existing files.
public enum NamespaceDownloadMode: String, Codable, Sendable, CaseIterable {
    /// Every file's content is downloaded (no stubs are created by the download).
    case avoidTieredFiles = "avoid-tiered-files"
    /// All files arrive as stubs, in seconds; content is recalled on access.
    case namespaceOnly = "namespace-only"
    /// Stubs first, then content fetched in the background, hottest first.
    case namespaceThenContent = "namespace-then-content"
}

/// Cloud tiering settings of one endpoint (absent: tiering off).
public struct TieringConfig: Codable, Sendable, Equatable {
    /// Keep at least this percent of the volume free by tiering the coldest files (0: no free-space policy).
    /// The largest value of all endpoints on one volume applies to each of them.
    public var volumeFreeSpacePercent: Int
    /// Tier files not accessed for this many days (nil: no date policy).
    public var dateDays: Int?
    /// How new cloud files arrive on the endpoint.
    public var download: NamespaceDownloadMode
    /// New and changed cloud files are downloaded with content, not as stubs.
    public var proactiveRecall: Bool

    /// Tiering settings.
    public init(volumeFreeSpacePercent: Int = 20, dateDays: Int? = nil, download: NamespaceDownloadMode = .avoidTieredFiles, proactiveRecall: Bool = false) {
        self.volumeFreeSpacePercent = volumeFreeSpacePercent
        self.dateDays = dateDays
        self.download = download
        self.proactiveRecall = proactiveRecall
    }

    /// True when cloud files should arrive as stubs.
    var downloadsStubs: Bool { !proactiveRecall && download != .avoidTieredFiles }
}
