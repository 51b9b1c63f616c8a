import FleetTestSupport
import Foundation
import Synchronization
import Testing

/// Writes batches of new files into the source directory on its own thread until stopped.
final class SourceWriter: Sendable {
  private let stopped = Atomic<Bool>(false)
  private let finished = Atomic<Bool>(false)
  /// Batches written so far (5 files each).
  let batches = Atomic<Int>(0)
  /// Writes that failed, with their output.
  let failures = Mutex<[String]>([])

  /// Starts writing `w-BATCH-N` files into `directory` on `node`.
  init(fleet: TestFleet, node: TestFleet.Node, directory: String) {
    let thread = Thread { [self] in
      var batch = 0
      while !stopped.load(ordering: .acquiring) {
        batch += 1
        let command = "for j in 1 2 3 4 5; do echo \(batch)-$j > \(directory)/w-\(batch)-$j; done"
        do {
          let out = try fleet.run(on: node, command)
          if out.status != 0 { failures.withLock { $0.append(out.output) } }
        } catch {
          failures.withLock { $0.append("\(error)") }
        }
        batches.add(1, ordering: .releasing)
      }
      finished.store(true, ordering: .releasing)
    }
    thread.name = "source-writer"
    thread.start()
  }

  /// Waits until `more` batches beyond the current count are written.
  func waitFor(_ more: Int) throws {
    let target = batches.load(ordering: .acquiring) + more
    try waitForBlocking("\(more) more batches written") { batches.load(ordering: .acquiring) >= target }
  }

  /// Stops writing and waits for the last batch; returns how many batches were written.
  func stop() throws -> Int {
    stopped.store(true, ordering: .releasing)
    try waitForBlocking("the writer stopped") { finished.load(ordering: .acquiring) }
    return batches.load(ordering: .acquiring)
  }
}

extension ProvisionFleetTests {
  /// `fleetsync rotate-secrets` (issue 11) on real hosts, with systemd and with the pid-file
  /// supervisor, while files are written on the source all along: a rotation, then one cut off
  /// between the daemon and the watcher (the password file cannot be replaced: a bind mount over it)
  /// and run again. Every file arrives, the old secrets are refused and the new one accepted by a real
  /// rsync client, the watcher never restarted, the store holds the new secret, a second `up` changes
  /// nothing, and no secret is in any output or log.
  @Test(arguments: [false, true])
  func rotateSecretsChangesBothEndsAndLosesNoChange(systemd: Bool) throws {
    guard !systemd || TestFleet.systemdSupported else { return }
    let setup = try TwoNodeFleet("rotate", systemd: systemd)
    defer { setup.tearDown() }
    var captured = ""
    func fleetsync(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
      let out = try setup.fleetsync(args)
      captured += out.stdout + out.stderr
      return out
    }
    let on = setup.on
    let password = "'/etc/fleetsync/watch/a:bk1:s1-a.password'"
    let daemonLine = "sed -n 's/^fs-s1-a://p' /etc/fleetsync/rsyncd/main.secrets"
    /// Keeps the secret both ends hold now under `name` on each node (mode 0600), for the checks.
    func keep(_ name: String) throws {
      _ = try on(setup.source, "umask 077; mkdir -p /root/rotate; cp \(password) /root/rotate/\(name)")
      _ = try on(setup.backup, "umask 077; mkdir -p /root/rotate; \(daemonLine) > /root/rotate/\(name)")
    }
    let watcherPid =
      systemd
      ? "systemctl show -p MainPID --value 'fleetsync-watch@a:bk1:s1-a.service'"
      : "pgrep -P \"$(cat '/run/fleetsync/watch-a:bk1:s1-a.pid')\" -f '[f]leetsync-watch run' | head -n 1"

    _ = try on(setup.source, "mkdir -p /srv/data/a")
    let up = try fleetsync(["up"])
    try #require(up.status == 0, "\(up.stdout)\(up.stderr)")
    try keep("original")
    let pid = try on(setup.source, watcherPid)
    let writer = SourceWriter(fleet: setup.fleet, node: setup.source, directory: "/srv/data/a")
    defer { _ = try? writer.stop() }
    try writer.waitFor(2)

    // A rotation while files are written.
    let rotated = try fleetsync(["rotate-secrets"])
    #expect(rotated.status == 0, "\(rotated.stdout)\(rotated.stderr)")
    #expect(rotated.stdout.contains("bk1/s1-a  rotated"), "\(rotated.stdout)")
    #expect(rotated.stdout.contains("rotate-secrets: ok=0 changed=2"), "\(rotated.stdout)")
    try keep("first")
    // Secrets are compared into a Bool first: a failed expectation prints its operands.
    let changed =
      try on(setup.source, "cat /root/rotate/first") != on(setup.source, "cat /root/rotate/original")
    #expect(changed, "the rotation gave the module a new secret")
    try writer.waitFor(2)

    // One cut off after the daemon's switch: the watcher's password file cannot be replaced. Its
    // transfers are refused meanwhile, and kept.
    _ = try on(setup.source, "mount --bind \(password) \(password)")
    let cut = try fleetsync(["rotate-secrets", "--json"])
    _ = try on(setup.source, "umount \(password)")
    #expect(cut.status == 2, "\(cut.stdout)\(cut.stderr)")
    #expect(cut.stdout.contains(#""outcome" : "failed""#), "\(cut.stdout)")
    let store = setup.inventory.replacingOccurrences(of: ".yaml", with: ".secrets")
    #expect(try String(contentsOfFile: store, encoding: .utf8).contains("bk1/s1-a+next "), "kept as pending")
    try waitForBlocking("the watcher is refused by its daemon") {
      try fleetsync(["status", "--limit", "s1"]).stdout.contains("auth failed")
    }
    try writer.waitFor(2)
    let finished = try fleetsync(["rotate-secrets"])
    #expect(finished.status == 0, "\(finished.stdout)\(finished.stderr)")
    #expect(finished.stdout.contains("bk1/s1-a  rotated"), "\(finished.stdout)")
    try keep("final")
    try writer.waitFor(2)
    let batches = try writer.stop()
    #expect(writer.failures.withLock { $0 } == [])

    try checkEverythingArrived(setup, files: batches * 5)
    try checkSecrets(setup, store: store, on: on)
    #expect(try on(setup.source, watcherPid) == pid, "the watcher was never restarted")
    let again = try fleetsync(["up"])
    #expect(
      again.status == 0 && again.stdout.contains("up: ok=2 changed=0"), "\(again.stdout)\(again.stderr)")
    #expect(try on(setup.source, watcherPid) == pid, "nor by the next up")
    try checkNoSecretShows(setup, in: captured, on: on)
  }

  /// Waits until the backup holds every file of the source, then compares them by checksum.
  private func checkEverythingArrived(_ setup: TwoNodeFleet, files: Int) throws {
    let list =
      "find . -path ./.fleetsync-versions -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum"
    func sums(_ node: TestFleet.Node, _ dir: String) throws -> String {
      try setup.fleet.run(on: node, "cd \(dir) && \(list)").output
    }
    var source = ""
    var backup = ""
    try? waitForBlocking("every file on the backup") {
      source = try sums(setup.source, "/srv/data/a")
      backup = try sums(setup.backup, "/srv/backup/s1/a")
      return source == backup
    }
    #expect(source == backup, "the backup differs from the source")
    #expect(source.split(separator: "\n").count == files, "every file written is on the source")
  }

  /// The old secrets are refused by the daemon, the new one is accepted (a real rsync client, the
  /// password from a file), and the controller's store holds the new one only.
  private func checkSecrets(
    _ setup: TwoNodeFleet, store: String, on: (TestFleet.Node, String) throws -> String
  ) throws {
    let target = "\"$(sed -n 's/^target = //p' '/etc/fleetsync/watch/a:bk1:s1-a.conf')/\""
    func login(_ file: String) throws -> (status: Int32, output: String) {
      try setup.fleet.run(
        on: setup.source,
        "rsync --list-only --contimeout=30 --timeout=60 --password-file=\(file) \(target) 2>&1")
    }
    for old in ["original", "first"] {
      let refused = try login("/root/rotate/\(old)")
      #expect(refused.status == 5 && refused.output.contains("auth failed"), "\(old): \(refused.output)")
    }
    let accepted = try login("'/etc/fleetsync/watch/a:bk1:s1-a.password'")
    #expect(accepted.status == 0, "\(accepted.output)")

    let final = try on(setup.source, "cat /root/rotate/final")
    let bothEnds = try on(setup.backup, "cat /root/rotate/final") == final
    #expect(bothEnds, "both ends hold one secret")
    let lines = try String(contentsOfFile: store, encoding: .utf8).split(separator: "\n")
      .filter { !$0.hasPrefix("#") }.map(String.init)
    let newOnly = lines == ["bk1/s1-a \(final)"]
    #expect(newOnly, "the store holds the new secret only")
  }

  /// No secret, old or new, is in fleetsync's output, the nodes' logs or their journals.
  private func checkNoSecretShows(
    _ setup: TwoNodeFleet, in output: String, on: (TestFleet.Node, String) throws -> String
  ) throws {
    for name in ["original", "first", "final"] {
      let secret = try on(setup.source, "cat /root/rotate/\(name)")
      let hidden = !secret.isEmpty && !output.contains(secret)
      #expect(hidden, "the \(name) secret in fleetsync's output")
    }
    let grep = """
      for f in /root/rotate/*; do
        grep -rlF -f "$f" /var/log /run/fleetsync /var/lib/fleetsync 2>/dev/null | sed "s|^|$f: |"
        if command -v journalctl >/dev/null; then
          journalctl --no-pager -o cat 2>/dev/null | grep -qF -f "$f" && echo "$f: in the journal"
        fi
      done; true
      """
    for node in [setup.source, setup.backup] {
      #expect(try on(node, grep) == "", "\(node): a secret in a log")
    }
  }
}
