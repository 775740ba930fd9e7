import Foundation
import Glibc
import Testing
@testable import FUSE

/// Real programs with demanding file system habits, run inside the mount.
@Suite struct MountedApplicationTests {
    /// The program's path, or a recorded issue naming what is missing (the test then fails).
    func require(_ program: String) -> Bool {
        for directory in ["/usr/bin", "/bin", "/usr/local/bin"] where access("\(directory)/\(program)", X_OK) == 0 {
            return true
        }
        Issue.record("\(program) is not installed: this application test cannot run")
        return false
    }

    @Test func gitInitAddCommitAndFsckWork() throws {
        guard require("git") else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let script = """
            set -e
            git init -q repo && cd repo
            git config user.email t@example.com && git config user.name Tester
            mkdir -p src && for i in $(seq 1 50); do echo "line $i" > src/f$i.txt; done
            git add . && git commit -qm first
            echo changed >> src/f1.txt && git mv src/f2.txt src/moved.txt && git commit -qam second
            git gc -q && git fsck --strict && git log --oneline | wc -l
            """
        let result = try shell(script, in: fixture.mountpoint)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.hasSuffix("2\n"), "\(result.output)")
        // The repository in the endpoint is the same repository.
        let backing = try shell("git -C repo fsck --strict && git -C repo status --porcelain | wc -l", in: fixture.endpoint)
        #expect(backing.status == 0 && backing.output.hasSuffix("0\n"), "\(backing.output)")
    }

    @Test func tarArchiveRoundTripsThroughTheMount() throws {
        guard require("tar") else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let script = """
            set -e
            mkdir -p tree/a/b && head -c 3000000 /dev/urandom > tree/a/big && echo hi > tree/a/b/small
            ln -s ../big tree/a/b/link && ln tree/a/big tree/a/hard && chmod 750 tree/a/b
            tar -cf - tree | (mkdir copy && cd copy && tar -xpf -)
            diff -r tree copy/tree && test "$(stat -c %a copy/tree/a/b)" = 750
            test "$(stat -c %i copy/tree/a/big)" = "$(stat -c %i copy/tree/a/hard)"
            """
        let result = try shell(script, in: fixture.mountpoint)
        #expect(result.status == 0, "\(result.output)")
        #expect(try readFile(fixture.backing("copy/tree/a/big")) == readFile(fixture.backing("tree/a/big")))
    }

    @Test func sqliteTransactionsAndIntegrityCheckWork() throws {
        guard require("sqlite3") else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let script = """
            set -e
            sqlite3 app.db "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null
            for i in $(seq 1 20); do sqlite3 app.db "BEGIN; INSERT INTO t(v) SELECT hex(randomblob(100)) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<50) SELECT x FROM c); COMMIT;"; done
            sqlite3 app.db "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
            sqlite3 rollback.db "PRAGMA journal_mode=DELETE; CREATE TABLE r(x); INSERT INTO r VALUES(1);" >/dev/null
            sqlite3 app.db "PRAGMA integrity_check; SELECT count(*) FROM t;"
            """
        let result = try shell(script, in: fixture.mountpoint)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output == "ok\n1000\n", "\(result.output)")
        let backing = try shell("sqlite3 app.db 'PRAGMA integrity_check; SELECT count(*) FROM t;'", in: fixture.endpoint)
        #expect(backing.output == "ok\n1000\n", "\(backing.output)")
    }

    @Test func cCompilerBuildsAndRunsAProgramInTheMount() throws {
        guard require("cc"), require("make") else { return }
        let fixture = try MountFixture()
        defer { fixture.stop() }
        let script = """
            set -e
            printf 'int twice(int x);\\nint twice(int x) { return 2 * x; }\\n' > lib.c
            printf '#include <stdio.h>\\nint twice(int x);\\nint main(void) { printf("%%d\\\\n", twice(21)); return 0; }\\n' > main.c
            printf 'app: main.o lib.o\\n\\tcc -o app main.o lib.o\\n%%.o: %%.c\\n\\tcc -O1 -c $< -o $@\\n' > Makefile
            make -s && ./app
            """
        let result = try shell(script, in: fixture.mountpoint)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.hasSuffix("42\n"), "\(result.output)")
    }
}
