import Backends
import Synchronization
import Testing

/// Records the backoffs a policy asks for instead of sleeping.
final class SleepRecorder: Sendable {
    let delays = Mutex<[Duration]>([])
    var policySleep: @Sendable (Duration) async throws -> Void {
        { [self] duration in delays.withLock { $0.append(duration) } }
    }
}

@Suite struct RetryingStoreTests {
    @Test func transientFailuresAreRetriedUntilSuccess() async throws {
        let faults = FaultInjectingStore(MemoryStore())
        faults.inject(.init(operations: ["put", "get"], count: 4))
        let recorder = SleepRecorder()
        let store = RetryingStore(faults, policy: RetryPolicy(maxAttempts: 6, sleep: recorder.policySleep))
        try await store.put("k", bytes: [1, 2])
        #expect(try await store.get("k") == [1, 2])
        #expect(faults.calls("put") + faults.calls("get") == 6)
        #expect(recorder.delays.withLock { $0.count } == 4)
    }

    @Test func attemptsAreBoundedAndTheLastErrorSurfaces() async throws {
        let faults = FaultInjectingStore(MemoryStore())
        faults.inject(.init(operations: ["get"], count: 100))
        let store = RetryingStore(faults, policy: RetryPolicy(maxAttempts: 3, sleep: SleepRecorder().policySleep))
        await StoreConformance.expectCode(.transient) { _ = try await store.get("k") }
        #expect(faults.calls("get") == 3)
    }

    @Test(arguments: [StoreError.Code.notFound, .unauthorized, .permanent, .invalidKey, .alreadyExists])
    func otherErrorsAreNeverRetried(_ code: StoreError.Code) async throws {
        let faults = FaultInjectingStore(MemoryStore())
        faults.inject(.init(operations: ["put"], count: 100, code: code))
        let store = RetryingStore(faults, policy: RetryPolicy(maxAttempts: 5, sleep: SleepRecorder().policySleep))
        await StoreConformance.expectCode(code) { try await store.put("k", bytes: [1]) }
        #expect(faults.calls("put") == 1)
    }

    @Test func backoffGrowsExponentiallyWithFullJitterUpToTheCap() {
        let policy = RetryPolicy(maxAttempts: 10, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.ceiling(beforeRetry: 1) == .milliseconds(100))
        #expect(policy.ceiling(beforeRetry: 2) == .milliseconds(200))
        #expect(policy.ceiling(beforeRetry: 4) == .milliseconds(800))
        #expect(policy.ceiling(beforeRetry: 5) == .seconds(1))
        #expect(policy.ceiling(beforeRetry: 60) == .seconds(1))
        #expect(policy.delay(beforeRetry: 3, unit: 0) == .zero)
        #expect(policy.delay(beforeRetry: 3, unit: 0.5) == .milliseconds(200))
    }

    @Test func actualDelaysStayWithinTheirCeilings() async throws {
        let faults = FaultInjectingStore(MemoryStore())
        faults.inject(.init(operations: ["head"], count: 100))
        let recorder = SleepRecorder()
        let policy = RetryPolicy(maxAttempts: 8, baseDelay: .milliseconds(10), maxDelay: .milliseconds(200), sleep: recorder.policySleep)
        await StoreConformance.expectCode(.transient) { _ = try await RetryingStore(faults, policy: policy).head("k") }
        let delays = recorder.delays.withLock { $0 }
        #expect(delays.count == 7)
        for (index, delay) in delays.enumerated() {
            #expect(delay >= .zero && delay <= policy.ceiling(beforeRetry: index + 1))
        }
    }

    @Test func aPutIfAbsentWhoseAnswerWasLostStillSucceeds() async throws {
        let faults = FaultInjectingStore(MemoryStore())
        faults.inject(.init(operations: ["putIfAbsent"], afterWrite: true))
        let store = RetryingStore(faults, policy: RetryPolicy(sleep: SleepRecorder().policySleep))
        try await store.putIfAbsent("log/1", bytes: [7])
        #expect(faults.calls("putIfAbsent") == 2)
    }

    @Test func aPutIfAbsentThatLostTheRaceReportsAlreadyExists() async throws {
        let memory = MemoryStore()
        try await memory.put("log/1", bytes: [1])
        let faults = FaultInjectingStore(memory)
        faults.inject(.init(operations: ["putIfAbsent"]))
        let store = RetryingStore(faults, policy: RetryPolicy(sleep: SleepRecorder().policySleep))
        await StoreConformance.expectCode(.alreadyExists) { try await store.putIfAbsent("log/1", bytes: [2]) }
        #expect(try await memory.get("log/1") == [1])
    }

    @Test func passesTheConformanceSuiteWhileFaultsAreInjected() async throws {
        let faults = FaultInjectingStore(MemoryStore())
        for operation in ["get", "put", "putIfAbsent", "head", "list", "delete"] {
            faults.inject(.init(operations: [operation], count: 3))
        }
        try await StoreConformance.run(on: RetryingStore(faults, policy: RetryPolicy(sleep: SleepRecorder().policySleep)))
    }
}
