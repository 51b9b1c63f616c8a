import FleetCore
import FleetTestSupport
import Foundation
import Testing

@testable import FleetProvision

#if canImport(Glibc)
  import Glibc
#endif

/// The supervisor script (`Units.supervisor`) run for real by `/bin/sh`, around a stand-in watcher
/// whose `check` answers what the test says: an unhealthy watcher is left running however many
/// checks it fails, a hung one is stopped and started again, and TERM stops both.
@Suite struct SupervisorScriptTests {
  final class Bench {
    let dir: String
    let process = Process()

    init() throws {
      dir = NSTemporaryDirectory() + "fleetsync-supervise-\(UUID().uuidString)"
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      try Units.supervisor.write(toFile: dir + "/supervise", atomically: true, encoding: .utf8)
      // `run` records its pid and waits; `check` counts itself and exits with the verdict file's status.
      try """
      #!/bin/sh
      case "$1" in
        run) echo $$ >>'\(dir)/runs'; exec sleep 1000 ;;
        check) echo x >>'\(dir)/checks'; exit "$(cat '\(dir)/verdict')" ;;
      esac
      exit 64
      """.write(toFile: dir + "/watcher", atomically: true, encoding: .utf8)
      chmod(dir + "/watcher", 0o755)
      try verdict(1)
      process.executableURL = URL(fileURLWithPath: "/bin/sh")
      process.arguments = [dir + "/supervise", dir + "/pid", dir + "/log", dir + "/watcher", dir + "/w.conf"]
      process.environment = [
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FLEETSYNC_CHECK_INTERVAL": "1",
        "FLEETSYNC_CHECK_FAILURES": "2", "FLEETSYNC_STOP_GRACE": "2",
      ]
      try process.run()
    }

    deinit {
      // TERM: the supervisor's trap stops its checker too, which a KILL would leave running.
      if process.isRunning {
        process.terminate()
        process.waitUntilExit()
      }
      for pid in runs { kill(pid, SIGKILL) }
      try? FileManager.default.removeItem(atPath: dir)
    }

    func verdict(_ status: Int) throws {
      try "\(status)\n".write(toFile: dir + "/verdict", atomically: true, encoding: .utf8)
    }

    func lines(_ name: String) -> [String] {
      ((try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(
        String.init)
    }

    var runs: [Int32] { lines("runs").compactMap { Int32($0) } }
    var checks: Int { lines("checks").count }
  }

  @Test func unhealthyIsLeftRunningAndHungIsRestarted() throws {
    let bench = try Bench()
    try waitForBlocking("the watcher runs") { bench.runs.count == 1 }
    let first = bench.runs[0]
    // Unhealthy (exit 1) many times over the failure limit of 2: never restarted.
    try waitForBlocking("six checks") { bench.checks >= 6 }
    #expect(bench.runs == [first])
    #expect(kill(first, 0) == 0)

    // Hung (exit 2): after two in a row it is stopped and started again.
    try bench.verdict(2)
    try waitForBlocking("a second run") { bench.runs.count >= 2 }
    try bench.verdict(0)
    try waitForBlocking("the hung run is gone") { kill(first, 0) != 0 }
    let log = bench.lines("log").joined(separator: "\n")
    #expect(log.contains("check 2/2: "), "\(log)")
    #expect(log.contains("the watcher (pid \(first)) is hung: stopping it to start it again"), "\(log)")

    // TERM stops the supervisor and its watcher, and removes the pid file.
    #expect(bench.lines("pid") == ["\(bench.process.processIdentifier)"])
    bench.process.terminate()
    bench.process.waitUntilExit()
    #expect(bench.process.terminationStatus == 0)
    for pid in bench.runs {
      try waitForBlocking("run \(pid) stops with its supervisor") { kill(pid, 0) != 0 }
    }
    #expect(!FileManager.default.fileExists(atPath: bench.dir + "/pid"))
  }

  /// A watcher that does not answer after a restart for not answering either is not restarted in a
  /// loop (its port may be blocked): left, said once; once it answered, a hang restarts it again.
  @Test func aRestartThatDidNotHelpIsNotRepeatedUntilItAnswers() throws {
    let bench = try Bench()
    let mark = bench.dir + "/pid.unanswered"
    try waitForBlocking("the watcher runs") { bench.runs.count == 1 }
    try bench.verdict(2)
    try waitForBlocking("a restart for not answering") { bench.runs.count == 2 }
    #expect(bench.lines("pid.unanswered").first?.hasSuffix(" fleetsync-supervise") == true)
    let said = "does not answer, also since a restart for that"
    try waitForBlocking("the supervisor says it does not restart it again") {
      bench.lines("log").contains { $0.contains(said) }
    }
    let checks = bench.checks
    try waitForBlocking("more checks") { bench.checks >= checks + 3 }
    #expect(bench.runs.count == 2, "\(bench.lines("log"))")
    #expect(bench.lines("log").filter { $0.contains(said) }.count == 1, "said once: \(bench.lines("log"))")

    // It answers (unhealthy): the mark goes, and the next hang is restarted again.
    try bench.verdict(1)
    try waitForBlocking("the mark removed") { !FileManager.default.fileExists(atPath: mark) }
    try bench.verdict(2)
    try waitForBlocking("a restart after the answer") { bench.runs.count == 3 }
  }
}
