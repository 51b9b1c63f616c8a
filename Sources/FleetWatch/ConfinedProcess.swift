import CLandlock
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A program run to its end in a Landlock sandbox: its exit, and the tails of its output.
///
/// swift-subprocess has no hook between fork and exec on Linux, where a sandbox must be applied, so
/// the child is started by the C shim (`fleet_spawn`: vfork, default signals, standard streams,
/// no-new-privileges, `landlock_restrict_self`, execve; it never runs the program unconfined). Output
/// is drained and the child reaped on a thread of its own, never on the cooperative pool.
enum ConfinedProcess {
  /// How the program ended.
  enum Termination: Equatable {
    case exited(Int32)
    case signaled(Int32)
  }

  /// A finished run.
  struct Result {
    var termination: Termination
    var stdout: OutputTail
    var stderr: OutputTail
  }

  /// The program could not be started; nothing ran.
  struct SpawnError: Error, CustomStringConvertible {
    /// What failed (`fleet_spawn_step`).
    var step: fleet_spawn_step
    var errno: Int32

    var description: String {
      let what =
        switch step {
        case FLEET_SPAWN_CONFINE: "applying the sandbox (landlock_restrict_self)"
        case FLEET_SPAWN_STDIO: "setting up its output"
        case FLEET_SPAWN_EXEC: "execve"
        default: "starting it"
        }
      return "\(what) failed: \(String(cString: strerror(self.errno)))"
    }
  }

  /// Runs `executable` with `arguments` (argv[0] is added) restricted to `ruleset` (none when -1),
  /// which is closed here, with `environment` (`NAME=value`; this process's by default), at
  /// `priority`; kills it (SIGKILL) when the task is cancelled and then throws `CancellationError`.
  static func run(
    executable: String, arguments: [String], environment: [String]? = nil, ruleset: Int32, tailCapacity: Int,
    priority: ProcessPriority = .normal
  ) async throws -> Result {
    defer { close(ruleset) }
    var outPipe: [Int32] = [-1, -1]
    var errPipe: [Int32] = [-1, -1]
    guard fleet_pipe_cloexec(&outPipe) == 0 else { throw SpawnError(step: FLEET_SPAWN_STDIO, errno: errno) }
    guard fleet_pipe_cloexec(&errPipe) == 0 else {
      let e = errno
      outPipe.forEach { close($0) }
      throw SpawnError(step: FLEET_SPAWN_STDIO, errno: e)
    }
    let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
    let pid: pid_t
    do {
      defer {
        if devNull >= 0 { close(devNull) }
        close(outPipe[1])
        close(errPipe[1])
      }
      guard devNull >= 0 else { throw SpawnError(step: FLEET_SPAWN_STDIO, errno: errno) }
      pid = try spawn(
        executable, [executable] + arguments, environment: environment,
        stdio: (devNull, outPipe[1], errPipe[1]),
        ruleset: ruleset, background: priority == .background)
    } catch {
      close(outPipe[0])
      close(errPipe[0])
      throw error
    }
    let child = Child(pid: pid)
    let (outRead, errRead) = (outPipe[0], errPipe[0])
    let result = await withTaskCancellationHandler {
      await withCheckedContinuation { (done: CheckedContinuation<Result, Never>) in
        let thread = Thread {
          let (out, err) = drain(outRead, errRead, capacity: tailCapacity)
          close(outRead)
          close(errRead)
          done.resume(returning: Result(termination: child.reap(), stdout: out, stderr: err))
        }
        thread.name = "fleetsync-rsync"
        thread.start()
      }
    } onCancel: {
      child.terminate()
    }
    if Task.isCancelled { throw CancellationError() }
    return result
  }

  private static func spawn(
    _ path: String, _ argv: [String], environment: [String]?, stdio: (Int32, Int32, Int32), ruleset: Int32,
    background: Bool
  ) throws -> pid_t {
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = environment.map { $0.map { strdup($0) } + [nil] }
    defer {
      cArgs.forEach { free($0) }
      cEnv?.forEach { free($0) }
    }
    var pid: pid_t = 0
    var step = FLEET_SPAWN_OK.rawValue
    let rc =
      if let cEnv {
        fleet_spawn(&pid, &step, path, cArgs, cEnv, stdio.0, stdio.1, stdio.2, ruleset, background ? 1 : 0)
      } else {
        fleet_spawn(&pid, &step, path, cArgs, environ, stdio.0, stdio.1, stdio.2, ruleset, background ? 1 : 0)
      }
    guard rc == 0 else { throw SpawnError(step: fleet_spawn_step(step), errno: rc) }
    return pid
  }

  /// Reads both pipes to their end, keeping the tails.
  private static func drain(_ out: Int32, _ err: Int32, capacity: Int) -> (OutputTail, OutputTail) {
    var tails = [OutputTail(capacity: capacity), OutputTail(capacity: capacity)]
    var fds = [
      pollfd(fd: out, events: Int16(POLLIN), revents: 0), pollfd(fd: err, events: Int16(POLLIN), revents: 0),
    ]
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    while fds.contains(where: { $0.fd >= 0 }) {
      if poll(&fds, nfds_t(fds.count), -1) < 0 {
        if errno == EINTR { continue }
        break
      }
      for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
        let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
        if n > 0 {
          buffer.withUnsafeBytes { tails[i].append(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
        } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
          fds[i].fd = -1
        }
      }
    }
    return (tails[0], tails[1])
  }

  /// A child that may be killed until it is reaped (never after: its pid could be reused).
  final class Child: Sendable {
    let pid: pid_t
    private let exited = Mutex(false)

    init(pid: pid_t) { self.pid = pid }

    func terminate() {
      exited.withLock { if !$0 { _ = kill(pid, SIGKILL) } }
    }

    /// Waits for the child to end, then reaps it.
    func reap() -> Termination {
      var info = siginfo_t()
      while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
      exited.withLock { $0 = true }
      var status: Int32 = 0
      while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
      let signal = status & 0x7f
      return signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }
  }
}
