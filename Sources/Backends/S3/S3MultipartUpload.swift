import Foundation

/// Multipart uploads: large objects in parallel parts, aborted on any failure.
extension S3Store {
    /// An upload that was started but neither completed nor aborted.
    public struct IncompleteUpload: Sendable, Hashable {
        /// The share key being uploaded.
        public var key: String
        /// S3's id of the upload.
        public var uploadId: String
    }

    /// The part boundaries for an object of `count` bytes: parts of `partSize` (at least 5 MiB, and large
    /// enough for at most 10,000 parts), the last one shorter.
    public static func partRanges(count: Int, partSize: Int) -> [Range<Int>] {
        var size = max(partSize, minimumPartSize)
        size = max(size, (count + maximumParts - 1) / maximumParts)
        return stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
    }

    func putMultipart(_ key: String, bytes: [UInt8]) async throws {
        let objectKey = location.objectKey(key)
        let parts = Self.partRanges(count: bytes.count, partSize: configuration.partSize)
        // An initiation whose answer was lost may still have created an upload this store never
        // learns the id of; such strays are found and aborted once this upload is finished.
        var strays = false
        let uploadId: String
        do {
            uploadId = try await retrying { _ in
                let initiate = try await self.exchange("put", key, method: "POST", objectKey: objectKey, query: [("uploads", "")],
                                                       noteAmbiguous: { strays = true })
                guard initiate.status == 200 else { throw self.failure(initiate, "put", key) }
                guard let id = S3XML.value("UploadId", in: Substring(decoding: initiate.body, as: UTF8.self)), !id.isEmpty else {
                    throw self.inconsistent("put", key, "CreateMultipartUpload returned no UploadId")
                }
                return id
            }
        } catch {
            if strays { await Task.detached { [self] in await abortUploads(of: objectKey, except: nil) }.value }
            throw error
        }
        do {
            let etags = try await uploadParts(key, objectKey: objectKey, uploadId: uploadId, bytes: bytes, parts: parts)
            try await completeUpload(key, objectKey: objectKey, uploadId: uploadId, etags: etags, size: bytes.count)
        } catch {
            // Detached so that the abort still runs when the failure is the caller's cancellation.
            await Task.detached { [self] in
                await abortUpload(key, objectKey: objectKey, uploadId: uploadId)
                if strays { await abortUploads(of: objectKey, except: uploadId) }
            }.value
            throw error
        }
        if strays { await Task.detached { [self] in await abortUploads(of: objectKey, except: uploadId) }.value }
    }

    /// Aborts the incomplete uploads of exactly `objectKey` other than `except`, best effort.
    ///
    /// Only called after an initiation whose answer was lost. Another writer uploading the very same
    /// key at that moment would lose its upload too and fail (transiently); pack keys are unique to
    /// their writer, so that does not happen in a cloud share.
    func abortUploads(of objectKey: String, except: String?) async {
        guard let uploads = try? await listUploads(prefix: objectKey) else { return }
        for upload in uploads where upload.objectKey == objectKey && upload.uploadId != except {
            _ = try? await send("put", upload.objectKey, method: "DELETE", objectKey: upload.objectKey, query: [("uploadId", upload.uploadId)])
        }
    }

    /// Incomplete uploads whose S3 key starts with `prefix` (up to 1,000), with when each was initiated
    /// (nil when the answer does not say).
    func listUploads(prefix: String) async throws -> [(objectKey: String, uploadId: String, initiated: Date?)] {
        var query: [(name: String, value: String)] = [("uploads", "")]
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        let response = try await send("list uploads", "", method: "GET", objectKey: nil, query: query)
        guard response.status == 200 else { throw failure(response, "list uploads", "") }
        return S3XML.elements("Upload", in: Substring(decoding: response.body, as: UTF8.self)).compactMap { upload in
            guard let key = S3XML.value("Key", in: upload), let id = S3XML.value("UploadId", in: upload) else { return nil }
            return (key, id, S3XML.value("Initiated", in: upload).flatMap(S3XML.date))
        }
    }

    /// Aborts the incomplete multipart uploads under the prefix initiated more than `age` seconds ago
    /// (those of writers stopped mid-upload); an upload whose listing gives no time is kept.
    public func removeAbandonedWrites(olderThan age: Double) async throws -> Int {
        let before = Date().addingTimeInterval(-age)
        var removed = 0
        for upload in try await listUploads(prefix: location.prefix.isEmpty ? "" : location.prefix + "/") {
            guard let initiated = upload.initiated, initiated < before, let key = location.shareKey(upload.objectKey) else { continue }
            await abortUpload(key, objectKey: upload.objectKey, uploadId: upload.uploadId)
            removed += 1
        }
        return removed
    }

    private func uploadParts(_ key: String, objectKey: String, uploadId: String, bytes: [UInt8], parts: [Range<Int>]) async throws -> [String] {
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var etags = [String](repeating: "", count: parts.count)
            var next = 0
            func startNext() {
                let index = next
                next += 1
                group.addTask {
                    let slice = bytes[parts[index]]
                    let response = try await self.send("put", key, method: "PUT", objectKey: objectKey,
                                                       query: [("partNumber", String(index + 1)), ("uploadId", uploadId)],
                                                       body: .bytes(slice), payloadHash: self.payloadHash(slice))
                    guard response.status == 200 else { throw self.failure(response, "put", key) }
                    guard let etag = response.headers["ETag"], !etag.isEmpty else {
                        throw self.inconsistent("put", key, "UploadPart \(index + 1) returned no ETag")
                    }
                    return (index, etag)
                }
            }
            while next < min(parts.count, max(1, configuration.maxConcurrentParts)) { startNext() }
            while let (index, etag) = try await group.next() {
                etags[index] = etag
                if next < parts.count { startNext() }
            }
            return etags
        }
    }

    private func completeUpload(_ key: String, objectKey: String, uploadId: String, etags: [String], size: Int) async throws {
        var xml = "<CompleteMultipartUpload>"
        for (index, etag) in etags.enumerated() {
            xml += "<Part><PartNumber>\(index + 1)</PartNumber><ETag>\(S3XML.escape(etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        var ambiguous = false
        try await retrying { _ in
            let response = try await self.exchange("put", key, method: "POST", objectKey: objectKey, query: [("uploadId", uploadId)],
                                                   headers: ["Content-Type": "application/xml"], body: .bytes(body[...]),
                                                   payloadHash: self.payloadHash(body[...]), noteAmbiguous: { ambiguous = true })
            // S3 may answer 200 and still fail, with an <Error> document in the body.
            if response.status == 200, S3XML.error(response.body) == nil { return }
            if response.status == 200 {
                if let reason = Self.retryableReason(HTTPResponse(status: 500, headers: [:], body: response.body)) {
                    throw StoreError(.transient, store: self.displayName, operation: "put", key: key, cause: reason)
                }
                throw self.failure(HTTPResponse(status: 400, headers: response.headers, body: response.body), "put", key)
            }
            // A retry after a lost answer finds the upload gone because it completed.
            if ambiguous, S3XML.error(response.body)?.code == "NoSuchUpload",
               let info = try? await self.head(key), info.size == Int64(size) {
                return
            }
            throw self.failure(response, "put", key)
        }
    }

    /// Aborts an upload, retrying transient failures; a failure here is not reported because the
    /// upload's own error is the one that matters, and ``abortIncompleteUploads()`` can clean up later.
    func abortUpload(_ key: String, objectKey: String, uploadId: String) async {
        _ = try? await send("put", key, method: "DELETE", objectKey: objectKey, query: [("uploadId", uploadId)])
    }

    /// Multipart uploads under the share's prefix that were neither completed nor aborted (for example
    /// after a crash). Lists up to 1,000.
    public func incompleteUploads() async throws -> [IncompleteUpload] {
        try await listUploads(prefix: location.prefix.isEmpty ? "" : location.prefix + "/").compactMap { upload in
            location.shareKey(upload.objectKey).map { IncompleteUpload(key: $0, uploadId: upload.uploadId) }
        }
    }
}
