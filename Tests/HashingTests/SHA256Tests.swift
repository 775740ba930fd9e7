import Hashing
import Testing

/// Known answers from FIPS 180-2 appendix B and the NIST CAVP examples.
@Suite struct SHA256Tests {
    @Test(arguments: [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func oneShotMatchesThePublishedVector(message: String, expected: String) {
        #expect(SHA256.hash(Array(message.utf8)).hex == expected)
    }

    @Test(arguments: [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func streamingByteByByteMatchesThePublishedVector(message: String, expected: String) {
        let hasher = SHA256()
        for byte in message.utf8 { hasher.update([byte]) }
        #expect(hasher.finalize().hex == expected)
    }

    @Test func oneMillionAsStreamedInUnevenPiecesMatchesThePublishedVector() {
        // Piece sizes that straddle the 64-byte block boundary in every phase.
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        let pieces = [1, 63, 64, 65, 1000, 4096, 7]
        let hasher = SHA256()
        var remaining = 1_000_000
        var index = 0
        while remaining > 0 {
            let count = min(pieces[index % pieces.count], remaining)
            hasher.update([UInt8](repeating: UInt8(ascii: "a"), count: count))
            remaining -= count
            index += 1
        }
        #expect(hasher.finalize().hex == expected)
        #expect(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)).hex == expected)
    }

    @Test func anEmptyUpdateChangesNothing() {
        let hasher = SHA256()
        hasher.update([UInt8]())
        hasher.update(Array("abc".utf8))
        hasher.update([UInt8]())
        #expect(hasher.finalize() == SHA256.hash(Array("abc".utf8)))
    }

    /// Digests order as their bytes do, whichever byte first differs (one in each 8-byte word, and both
    /// halves of a byte).
    @Test func digestsOrderAsTheirBytes() {
        var digests = (0..<64).map { SHA256.hash([UInt8($0)]) }
        let base = SHA256.hash([200]).array
        for position in [0, 7, 8, 15, 16, 24, 31] {
            for value: UInt8 in [0x00, 0x0f, 0x10, 0xf0, 0xff] {
                var bytes = base
                bytes[position] = value
                digests.append(Digest32(bytes: bytes)!)
            }
        }
        for a in digests {
            for b in digests {
                #expect((a < b) == a.array.lexicographicallyPrecedes(b.array), "\(a.hex) < \(b.hex)")
            }
        }
    }

    @Test func aDigestRoundTripsThroughHexAndBytes() throws {
        let digest = SHA256.hash(Array("abc".utf8))
        #expect(Digest32(hex: digest.hex) == digest)
        #expect(Digest32(hex: digest.hex.uppercased()) == digest)
        #expect(Digest32(bytes: digest.array) == digest)
        #expect(digest.array.count == 32)
        #expect(digest.array.first == 0xba && digest.array.last == 0xad)
        #expect(Digest32(hex: "abc") == nil)
        #expect(Digest32(hex: String(repeating: "zz", count: 32)) == nil)
        #expect(Digest32(bytes: [UInt8](repeating: 0, count: 31)) == nil)
    }

    @Test func digestsOrderLikeTheirBytes() {
        let low = Digest32(bytes: [0x00] + [UInt8](repeating: 0xff, count: 31))!
        let high = Digest32(bytes: [0x01] + [UInt8](repeating: 0x00, count: 31))!
        #expect(low < high)
        #expect(!(high < low))
        #expect(Set([low, high, low]).count == 2)
    }
}

/// Known answers from RFC 4231 section 4 (test case 5 is a truncated MAC and is left out).
@Suite struct HMACSHA256Tests {
    static let vectors: [(name: String, key: [UInt8], message: [UInt8], mac: String)] = [
        ("1", [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("2", Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("3", [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("4", Array(1...25), [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ("6", [UInt8](repeating: 0xaa, count: 131),
         Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ("7", [UInt8](repeating: 0xaa, count: 131),
         Array(("This is a test using a larger than block-size key and a larger than block-size data. "
                + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test(arguments: vectors.indices)
    func macMatchesRFC4231(index: Int) {
        let vector = Self.vectors[index]
        #expect(HMACSHA256.mac(key: vector.key, message: vector.message).hex == vector.mac, "test case \(vector.name)")
    }

    @Test func stringMessageIsItsUTF8Bytes() {
        #expect(HMACSHA256.mac(key: Array("Jefe".utf8), string: "what do ya want for nothing?").hex
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func anEmptyKeyAndMessageGiveTheStandardMAC() {
        // SigV4 never signs with an empty key, but a nil base address must not crash libcrypto.
        #expect(HMACSHA256.mac(key: [UInt8](), message: [UInt8]()).hex
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }
}
