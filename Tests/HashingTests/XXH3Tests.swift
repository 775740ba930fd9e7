import Hashing
import Testing

/// Known answers from xxHash's own self-test (cli/xsum_sanity_check.c, v0.8.x).
@Suite struct XXH3Tests {
    static let prime32: UInt64 = 2_654_435_761
    static let prime64: UInt64 = 11_400_714_785_074_694_797

    /// xxhsum's sanity buffer: byte i is the top byte of PRIME32 * PRIME64^i.
    static func sanityBuffer(_ count: Int) -> [UInt8] {
        var generator = prime32
        return (0..<count).map { _ in
            defer { generator &*= prime64 }
            return UInt8(truncatingIfNeeded: generator >> 56)
        }
    }

    static let vectors64: [(length: Int, seed: UInt64, hash: UInt64)] = [
        (0, 0, 0x2D06_8005_38D3_94C2), (0, prime64, 0xA8A6_B918_B2F0_364A),
        (1, 0, 0xC44B_DFF4_074E_ECDB), (1, prime64, 0x032B_E332_DD76_6EF8),
        (6, 0, 0x27B5_6A84_CD2D_7325), (6, prime64, 0x8458_9C11_6AB5_9AB9),
        (12, 0, 0xA713_DAF0_DFBB_77E7), (12, prime64, 0xE730_3E1B_2336_DE0E),
        (24, 0, 0xA3FE_70BF_9D35_10EB), (24, prime64, 0x850E_80FC_35BD_D690),
        (48, 0, 0x397D_A259_ECBA_1F11), (48, prime64, 0xADC2_CBAA_44AC_C616),
        (80, 0, 0xBCDE_FBBB_2C47_C90A), (80, prime64, 0xC6DD_0CB6_9953_2E73),
        (195, 0, 0xCD94_217E_E362_EC3A), (195, prime64, 0xBA68_003D_370C_B3D9),
        (403, 0, 0xCDEB_804D_65C6_DEA4), (403, prime64, 0x6259_F6EC_FD64_43FD),
        (512, 0, 0x617E_4959_9013_CB6B), (512, prime64, 0x3CE4_57DE_14C2_7708),
        (2048, 0, 0xDD59_E2C3_A5F0_38E0), (2048, prime64, 0x66F8_1670_669A_BABC),
        (2240, 0, 0x6E73_A905_39CF_2948), (2240, prime64, 0x757B_A848_7D1B_5247),
        (2367, 0, 0xCB37_AEB9_E5D3_61ED), (2367, prime64, 0xD2DB_3415_B942_B42A),
    ]

    /// Unseeded entries only: the 128-bit API has no seed parameter.
    static let vectors128: [(length: Int, high: UInt64, low: UInt64)] = [
        (0, 0x99AA_06D3_0147_98D8, 0x6001_C324_468D_497F),
        (1, 0xA6CD_5E93_9200_0F6A, 0xC44B_DFF4_074E_ECDB),
        (6, 0x082A_FE0B_8162_D12A, 0x3E70_39BD_DA43_CFC6),
        (12, 0x6E3E_FD8F_C780_2B18, 0x061A_1927_13F6_9AD9),
        (24, 0x0CE9_66E4_678D_3761, 0x1E70_44D2_8B1B_901D),
        (48, 0xA002_AC4E_5478_227E, 0xF942_219A_ED80_F67B),
        (81, 0x4952_F581_81AB_0042, 0x5E8B_AFB9_F95F_B803),
        (222, 0x337E_0964_1B94_8717, 0xF1AE_BD59_7CEC_6B3A),
        (403, 0x1B6D_E21E_332D_D73D, 0xCDEB_804D_65C6_DEA4),
        (512, 0x18D2_D110_DCC9_BCA1, 0x617E_4959_9013_CB6B),
        (2048, 0xF736_557F_D470_73A5, 0xDD59_E2C3_A5F0_38E0),
        (2240, 0xCCB1_34FB_FA7C_E49D, 0x6E73_A905_39CF_2948),
        (2367, 0xE89C_0F6F_F369_B427, 0xCB37_AEB9_E5D3_61ED),
    ]

    @Test(arguments: vectors64.indices)
    func xxh3_64MatchesTheSanityVector(index: Int) {
        let vector = Self.vectors64[index]
        let input = Self.sanityBuffer(vector.length)
        #expect(XXH3.hash64(input, seed: vector.seed) == vector.hash, "length \(vector.length) seed \(vector.seed)")

        let streamed = XXH3_64(seed: vector.seed)
        for piece in Self.pieces(of: input) { streamed.update(piece) }
        #expect(streamed.digest() == vector.hash, "streamed, length \(vector.length) seed \(vector.seed)")
    }

    @Test(arguments: vectors128.indices)
    func xxh3_128MatchesTheSanityVector(index: Int) {
        let vector = Self.vectors128[index]
        let input = Self.sanityBuffer(vector.length)
        let expected = Fingerprint128(high: vector.high, low: vector.low)
        #expect(XXH3.hash128(input) == expected, "length \(vector.length)")

        let streamed = XXH3()
        for piece in Self.pieces(of: input) { streamed.update(piece) }
        #expect(streamed.digest128() == expected, "streamed, length \(vector.length)")
    }

    @Test func fingerprintPrintsHighHalfFirstAsThirtyTwoHexDigits() {
        #expect(XXH3.hash128([UInt8]()).description == "99aa06d3014798d86001c324468d497f")
        #expect(Fingerprint128(high: 1, low: 2).description == "00000000000000010000000000000002")
    }

    @Test func streamingAMegabyteInUnevenPiecesEqualsOneShot() {
        var generator: UInt64 = 42
        let input = (0..<1_048_583).map { _ -> UInt8 in
            generator = generator &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: generator >> 33)
        }
        let wide = XXH3(), narrow = XXH3_64()
        var offset = 0, step = 1
        while offset < input.count {
            let end = min(offset + step, input.count)
            wide.update(Array(input[offset..<end]))
            narrow.update(Array(input[offset..<end]))
            offset = end
            step = step * 3 % 70_001 + 1
        }
        #expect(wide.digest128() == XXH3.hash128(input))
        #expect(narrow.digest() == XXH3.hash64(input))
    }

    @Test func digestLeavesTheStateUsable() {
        let hasher = XXH3()
        hasher.update(Array("ab".utf8))
        _ = hasher.digest128()
        hasher.update(Array("c".utf8))
        #expect(hasher.digest128() == XXH3.hash128(Array("abc".utf8)))
    }

    /// Splits `input` into pieces of 1, 2, 3, … bytes so that every internal buffer path runs.
    static func pieces(of input: [UInt8]) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var offset = 0, size = 1
        while offset < input.count {
            let end = min(offset + size, input.count)
            result.append(Array(input[offset..<end]))
            offset = end
            size += 1
        }
        return result
    }
}
