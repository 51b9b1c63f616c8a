import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

#if canImport(Glibc)
  import Glibc
#endif

/// Issue 9 §6: two `up`/`down` runs never interleave, on the controller (``ControllerLock``) or on a
/// node (``NodeLease``), and a crashed run never leaves either locked for good.
@Suite struct ControllerLockTests {
  /// The error `body` throws, or nil.
  static func error(_ body: () async throws -> Void) async -> FleetError? {
    do {
      try await body()
      return nil
    } catch {
      return error as? FleetError
    }
  }

  /// Whether someone holds a `flock` on `path` (without taking it: a shared lock is refused too).
  static func isLocked(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return flock(fd, LOCK_SH | LOCK_NB) != 0
  }

  @Test func aSecondUpOrDownSaysWhoHoldsTheLockAndPlanStillRuns() async throws {
    let fleet = try FakeFleet()
    let provisioner = try fleet.provisioner()
    let held = try await ControllerLock.acquire(
      path: provisioner.lockFile, command: "fleetsync up -i inv.yaml")
    #expect(provisioner.lockFile == fleet.dir + "/inv.lock")

    for run in [provisioner.up, provisioner.down] {
      let error = try #require(await Self.error { _ = try await run() })
      #expect(error.code == .controllerLocked)
      #expect(error.message.contains("pid \(getpid()) on \(NodeLease.localHostName)"), "\(error.message)")
      #expect(error.message.contains("`fleetsync up -i inv.yaml`") && error.message.contains("--wait-lock"))
    }
    // Nothing was touched by the refused runs.
    #expect(fleet.hosts.values.allSatisfy { $0.state.steps.isEmpty })
    // plan reads only: no lock needed.
    let plan = try await provisioner.plan()
    #expect(plan.hosts.allSatisfy { $0.outcome == .changed })

    held.release()
    let up = try await provisioner.up()
    #expect(up.hosts.allSatisfy { $0.outcome == .changed })
    #expect(ControllerLock.holder(path: provisioner.lockFile) == nil, "up gave the lock back")
  }

  @Test func aBoundedWaitEndsWithTheHolderAndALongerOneGetsTheLock() async throws {
    let fleet = try FakeFleet()
    var options = try fleet.provisioner().options
    options.lockWait = .milliseconds(600)
    let waiting = try Provisioner(
      inventory: try fleet.inventory(), connector: FakeConnector(hosts: fleet.hosts), options: options)
    let held = try await ControllerLock.acquire(path: waiting.lockFile, command: "held by the test")
    let error = try #require(await Self.error { _ = try await waiting.up() })
    #expect(error.code == .controllerLocked && error.message.contains("held by the test"))

    options.lockWait = .seconds(600)
    let patient = try Provisioner(
      inventory: try fleet.inventory(), connector: FakeConnector(hosts: fleet.hosts), options: options)
    let run = Task { try await patient.up() }
    held.release()
    let report = try await run.value
    #expect(report.hosts.allSatisfy { $0.outcome == .changed })
  }

  /// A run refused in the instant between the holder's `flock` and its writing who it is still
  /// names the holder (it used to say "a run that has not yet said who it is").
  @Test func aHolderThatHasNotWrittenYetIsStillNamed() async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID().uuidString)").path
    defer { unlink(path) }
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    try #require(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
    defer { close(fd) }
    let late = Task {
      try await Task.sleep(for: .milliseconds(300))
      let text =
        #"{"pid":4242,"host":"elsewhere","command":"fleetsync up -i late","since":"2026-11-28T03:00:00Z"}"#
      _ = Array(text.utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }
    let error = try #require(
      await Self.error { _ = try await ControllerLock.acquire(path: path, command: "second") })
    try await late.value
    #expect(error.message.contains("pid 4242 on elsewhere (`fleetsync up -i late`)"), "\(error.message)")
  }

  /// A holder that dies (SIGKILL, no clean-up) leaves nothing locked: the kernel drops its flock.
  @Test func aKilledHolderLeavesTheLockFree() async throws {
    let fleet = try FakeFleet()
    let provisioner = try fleet.provisioner()
    let holder = Process()
    // One process that holds the lock (no child outlives it to keep the lock's file open).
    holder.executableURL = URL(fileURLWithPath: "/bin/sh")
    holder.arguments = ["-c", #"exec 9>>"$0" && flock 9 && exec sleep 600"#, provisioner.lockFile]
    try holder.run()
    defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
    try await waitUntil { Self.isLocked(provisioner.lockFile) || !holder.isRunning }
    #expect(await Self.error { _ = try await provisioner.up() }?.code == .controllerLocked)
    kill(holder.processIdentifier, SIGKILL)
    holder.waitUntilExit()
    let report = try await provisioner.up()
    #expect(report.hosts.allSatisfy { $0.outcome == .changed })
  }
}

/// Polls `condition` until it holds (generous deadline; a slow machine only makes it slower).
func waitUntil(_ condition: () -> Bool) async throws {
  let deadline = ContinuousClock.now + .seconds(120)
  while !condition() {
    guard ContinuousClock.now < deadline else { throw FleetError(.internal, "condition never held") }
    try await Task.sleep(for: .milliseconds(20))
  }
}

@Suite struct NodeLeaseTests {
  static let other = ControllerLock.Holder(
    pid: 4242, host: "controller-2", command: "fleetsync up -i /home/ops/fleet.yaml", since: Date())

  /// Another controller (another machine, another checkout) is working on nfs1: `up` leaves nfs1
  /// untouched and says who, the other hosts converge; once it is done, `up` converges nfs1 too.
  @Test func aNodeLeasedByAnotherRunIsLeftAloneAndNamesIt() async throws {
    let fleet = try FakeFleet()
    let lease = try await NodeLease.acquire(on: fleet["nfs1"], name: "nfs1", holder: Self.other, ttl: 600)
    fleet["nfs1"].heal()
    let report = try await fleet.up()
    let failure = try #require(report["nfs1"]?.failure)
    #expect(failure.contains("controller-2") && failure.contains("pid 4242"), "\(failure)")
    #expect(failure.contains("fleetsync up -i /home/ops/fleet.yaml") && failure.contains("lease ends in"))
    #expect(fleet["nfs1"].state.steps.allSatisfy { !$0.mutates && $0 != .facts }, "nothing read or written")
    #expect(report["nfs2"]?.failure == nil && report["bk1"]?.failure == nil)

    await lease.release()
    let again = try await fleet.up()
    #expect(again.values.allSatisfy { $0.failure == nil })
    #expect(fleet["nfs1"].state.differencesFromRecord == [])
    #expect(!FileManager.default.fileExists(atPath: fleet["nfs1"].leaseFile), "up gave its lease back")
  }

  /// A lease whose holder stopped renewing it (its controller crashed) expires, and is taken over.
  @Test func anExpiredLeaseIsTakenOver() async throws {
    let fleet = try FakeFleet()
    _ = try await NodeLease.acquire(on: fleet["nfs1"], name: "nfs1", holder: Self.other, ttl: 0)
    let report = try await fleet.up()
    #expect(report.values.allSatisfy { $0.failure == nil })
  }

  /// A lease of a run on this machine whose process is gone is taken over at once.
  @Test func aLeaseOfADeadLocalRunIsTakenOverAtOnce() async throws {
    let fleet = try FakeFleet()
    let dead = Process()
    dead.executableURL = URL(fileURLWithPath: "/bin/true")
    try dead.run()
    dead.waitUntilExit()
    var crashed = Self.other
    crashed.host = NodeLease.localHostName
    crashed.pid = dead.processIdentifier
    _ = try await NodeLease.acquire(on: fleet["nfs1"], name: "nfs1", holder: crashed, ttl: 600)
    let report = try await fleet.up()
    #expect(report.values.allSatisfy { $0.failure == nil })
  }

  /// A run whose lease was taken over while it stalled stops writing to the node.
  @Test func aRunThatLostItsLeaseStopsWriting() async throws {
    let node = FakeRemoteHost(name: "nfs1")
    let mine = ControllerLock.Holder.current(command: "fleetsync up")
    let stalled = try await NodeLease.acquire(on: node, name: "nfs1", holder: mine, ttl: 0)
    _ = try await NodeLease.acquire(on: node, name: "nfs1", holder: Self.other, ttl: 600)
    let host = LeasedHost(inner: node, lease: stalled)
    node.heal()
    do {
      try await host.write([1], to: "/etc/x", mode: 0o644)
      Issue.record("a write went through without the lease")
    } catch let error as FleetError {
      #expect(error.code == .nodeLockLost && error.message.contains("controller-2"), "\(error.message)")
    }
    #expect(node.state.steps == [.lease], "only the renewal ran")
  }

  /// Many runs race for one node's lease on a real file: exactly one gets it.
  @Test func racingRunsGetTheLeaseOnceOnly() async throws {
    let path = NSTemporaryDirectory() + "fleetsync-lease-race-\(UUID().uuidString)"
    defer { unlink(path) }
    let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
      for index in 0..<12 {
        group.addTask {
          var holder = Self.other
          holder.pid = Int32(index)
          do {
            _ = try await NodeLease.acquire(
              on: LocalShellHost(), name: "node", holder: holder, ttl: 600, path: path)
            return true
          } catch let error as FleetError where error.code == .nodeLocked {
            return false
          }
        }
      }
      return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
    }
    #expect(winners == 1)
  }
}
