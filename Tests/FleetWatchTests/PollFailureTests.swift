import FleetCore
import FleetTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// A value shared with closures that run on other threads.
final class Shared<Value: Sendable>: Sendable {
  let mutex: Mutex<Value>
  init(_ value: Value) { mutex = Mutex(value) }
  var value: Value { mutex.withLock { $0 } }
}

/// Log lines kept in memory, for tests that count what the engine says.
final class LogRecorder: Sendable {
  private let lines = Mutex<[(Logger.Level, String)]>([])

  var logger: Logger {
    Logger(label: "test") { _ in Handler(recorder: self) }
  }

  func lines(atLeast level: Logger.Level, containing text: String) -> [String] {
    lines.withLock { $0.filter { $0.0 >= level && $0.1.contains(text) }.map(\.1) }
  }

  struct Handler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
      recorder.lines.withLock { $0.append((event.level, event.message.description)) }
    }
  }
}

@Suite("poll failures: backoff, rate-limited logging, giving up")
struct PollFailuresTests {
  static let ms: UInt64 = 1_000_000

  @Test func transientFailuresBackOffAndLogOncePerInterval() {
    var p = PollFailures()
    var now: UInt64 = 1_000 * Self.ms
    var delays: [Duration] = []
    var loggedAt: [Duration] = []
    // 40 failures, each one delay after the previous: 38.27 s, short of giving up after 60 s.
    while delays.count < 40 {
      guard case .retry(let delay, let log) = p.failed(errno: ENOMEM, now: now) else {
        Issue.record("gave up after \(delays.count) failures")
        return
      }
      if log != nil { loggedAt.append(PollFailures.elapsed(from: 1_000 * Self.ms, to: now)) }
      delays.append(delay)
      now += UInt64(delay / .milliseconds(1)) * Self.ms
    }
    #expect(Array(delays.prefix(9)) == [10, 20, 40, 80, 160, 320, 640, 1000, 1000].map { .milliseconds($0) })
    #expect(delays.allSatisfy { $0 <= .seconds(1) })
    // At the first failure, then once per 15 s.
    #expect(loggedAt == [0, 15_270, 30_270].map { .milliseconds($0) })
    #expect(p.streak == 40)
  }

  @Test func aTransientFailureThatLastsStopsTheLoop() {
    var p = PollFailures()
    #expect(p.failed(errno: EAGAIN, now: 0) != .stop(""))
    guard case .stop(let message) = p.failed(errno: EAGAIN, now: 61_000 * Self.ms) else {
      Issue.record("kept retrying after 61 s")
      return
    }
    #expect(message.contains("poll failed 2 times in 61.0 s"))
    #expect(message.contains("supervisor restarts it"))
  }

  @Test(arguments: [EBADF, EFAULT, EINVAL])
  func aFailureRetryingCannotCureStopsAtOnce(code: Int32) {
    var p = PollFailures()
    guard case .stop(let message) = p.failed(errno: code, now: 0) else {
      Issue.record("retried errno \(code)")
      return
    }
    #expect(message.contains("poll failed: \(String(cString: strerror(code))) (errno \(code))"))
  }

  @Test func aSuccessEndsTheStreak() {
    var p = PollFailures()
    #expect(p.succeeded() == nil)
    _ = p.failed(errno: ENOMEM, now: 0)
    _ = p.failed(errno: ENOMEM, now: 10 * Self.ms)
    #expect(p.succeeded()?.contains("after 2 failure(s)") == true)
    #expect(p.streak == 0)
    // A new streak starts over: first delay, logged again.
    guard case .retry(let delay, let log) = p.failed(errno: ENOMEM, now: 100 * Self.ms) else {
      Issue.record("gave up")
      return
    }
    #expect(delay == .milliseconds(10))
    #expect(log != nil)
  }
}

/// The event loop with a `poll` that fails: it waits between tries, logs once, shows the error in
/// the status, and stops the engine with a clear error when poll cannot recover.
@Suite("Event loop when poll fails", .dependsOnInotifyLimits)
struct EventLoopPollFailureTests {
  struct Harness {
    let dir: String
    let core: EngineCore
    let log = LogRecorder()
    let stopPipe: [Int32]

    init() throws {
      var template = Array("/tmp/fleetwatch-pl.XXXXXX".utf8CString)
      guard let p = mkdtemp(&template) else { throw FleetError(.io, "mkdtemp failed") }
      dir = String(cString: p)
      let config = WatchConfig(
        source: dir, target: RsyncTarget(user: nil, host: "h", port: nil, module: "m"), stateDir: dir)
      core = EngineCore(config: config, logger: log.logger, journal: nil, replayed: [])
      var fds: [Int32] = [-1, -1]
      guard pipe(&fds) == 0 else { throw FleetError(.io, "pipe failed") }
      stopPipe = fds
    }

    func remove() {
      close(stopPipe[0])
      close(stopPipe[1])
      try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs an event loop whose `poll` is `poll` (given the call number, from 1) on its own thread,
    /// recording its backoff pauses; true when it ended within a minute (else it is told to stop).
    func runLoop(
      pauses: Shared<[Duration]>,
      poll: @escaping @Sendable (Int, UnsafeMutablePointer<pollfd>, nfds_t) -> Int32
    ) -> Bool {
      let done = DispatchSemaphore(value: 0)
      let calls = Shared(0)
      let late = Shared(false)
      let core = self.core
      let stopFD = stopPipe[0]
      let thread = Thread {
        let loop = EventLoop(core: core, stopFD: stopFD)
        loop.pollFailures.firstDelay = .milliseconds(1)
        loop.pollFailures.maxDelay = .milliseconds(1)
        loop.pollSystem.pause = { delay in pauses.mutex.withLock { $0.append(delay) } }
        loop.pollSystem.pollEvents = { fds, count, _ in
          let n = calls.mutex.withLock {
            $0 += 1
            return $0
          }
          return late.value ? Self.stop(fds, count) : poll(n, fds, count)
        }
        loop.run()
        done.signal()
      }
      thread.start()
      if done.wait(timeout: .now() + 60) == .success { return true }
      late.mutex.withLock { $0 = true }
      done.wait()
      return false
    }

    /// What `poll` returns when the stop pipe (the last descriptor) is readable.
    static func stop(_ fds: UnsafeMutablePointer<pollfd>, _ count: nfds_t) -> Int32 {
      fds[Int(count) - 1].revents = Int16(POLLIN)
      return 1
    }
  }

  @Test func aFailingPollWaitsLogsOnceAndShowsInTheStatus() throws {
    let h = try Harness()
    defer { h.remove() }
    let pauses = Shared<[Duration]>([])
    let ended = h.runLoop(pauses: pauses) { n, fds, count in
      guard n <= 40 else { return Harness.stop(fds, count) }
      errno = ENOMEM
      return -1
    }
    #expect(ended)
    #expect(pauses.value == Array(repeating: .milliseconds(1), count: 40))
    #expect(h.log.lines(atLeast: .warning, containing: "poll").count == 1)
    #expect(h.log.lines(atLeast: .notice, containing: "poll works again after 40 failure(s)").count == 1)
    let status = h.core.snapshot()
    #expect(status.lastErrorKind == .io)
    #expect(status.lastError?.contains("poll failed: \(String(cString: strerror(ENOMEM)))") == true)
    #expect(h.core.flags.withLock { $0.failure } == nil)
  }

  @Test func aPollThatCannotRecoverStopsTheEngineWithAClearError() throws {
    let h = try Harness()
    defer { h.remove() }
    let pauses = Shared<[Duration]>([])
    // Told to stop after 10,000 tries, should it keep trying.
    let ended = h.runLoop(pauses: pauses) { n, fds, count in
      guard n <= 10_000 else { return Harness.stop(fds, count) }
      errno = EBADF
      return -1
    }
    #expect(ended)
    #expect(pauses.value.isEmpty)
    #expect(h.log.lines(atLeast: .warning, containing: "poll").count == 1)
    let failure = h.core.flags.withLock { $0.failure }
    #expect(failure?.code == .watchInotify)
    #expect(failure?.message.contains("poll failed: \(String(cString: strerror(EBADF)))") == true)
    #expect(h.core.snapshot().lastErrorKind == .io)
  }
}
