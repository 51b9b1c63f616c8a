import CLibSSH2
import FleetCore
import Logging

/// The wrapper around a remote command that makes its exit status reliable and lets it be killed.
///
/// libssh2 1.10 reports exit status 0 when none arrived, so the remote shell appends a marker with the
/// real status (`\nFS<token>E<status>\n`), which is stripped; a missing marker means the connection was
/// lost before the command finished. The command runs in a subshell (`(eval ...)`) of the login shell,
/// which sshd made a session and process-group leader; the wrapper first prints that group id
/// (`FS<token>P<pgid>\n`), so cancellation can kill the whole group over a second channel.
struct RemoteCommand {
  let token: String
  let text: String

  init(_ command: String) throws {
    token = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let quoted = try ShellQuote.quote(command)
    text =
      "printf 'FS\(token)P%s\\n' \"$$\"; (eval \(quoted)); printf '\\nFS\(token)E%s\\n' \"$?\""
  }

  var pgidPrefix: [UInt8] { Array("FS\(token)P".utf8) }
  var statusMarker: [UInt8] { Array("\nFS\(token)E".utf8) }

  /// The process group id from the start of stdout, once the first line has arrived.
  func pgid(in stdout: [UInt8]) -> Int? {
    guard stdout.starts(with: pgidPrefix), let newline = stdout.firstIndex(of: UInt8(ascii: "\n")) else {
      return nil
    }
    return Int(String(decoding: stdout[pgidPrefix.count..<newline], as: UTF8.self))
  }

  /// Splits raw stdout into the command's own output and its exit status (nil if the marker is missing).
  func strip(_ stdout: [UInt8]) -> (output: [UInt8], status: Int32?) {
    var body = stdout[...]
    if stdout.starts(with: pgidPrefix), let newline = stdout.firstIndex(of: UInt8(ascii: "\n")) {
      body = stdout[(newline + 1)...]
    }
    let marker = statusMarker
    guard body.last == UInt8(ascii: "\n"), body.count >= marker.count + 2 else { return (Array(body), nil) }
    // The marker is the last line: find its start by scanning back from the end.
    var index = body.endIndex - 2
    while index > body.startIndex && body[index] != UInt8(ascii: "\n") { index -= 1 }
    guard body[index...].starts(with: marker),
      let status = Int32(String(decoding: body[(index + marker.count)..<(body.endIndex - 1)], as: UTF8.self))
    else { return (Array(body), nil) }
    return (Array(body[..<index]), status)
  }
}

extension Session {
  /// Runs `command` through the status/kill wrapper, feeding `stdin` then EOF, and collects both streams.
  func exec(_ command: String, stdin: [UInt8]?, control: OperationControl, deadline: Deadline) throws
    -> ExecResult
  {
    try checkUsable()
    let remote = try RemoteCommand(command)
    let channel = try openChannel(control, deadline)
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    do {
      try retry(control, deadline, what: "starting the command", code: .sshChannel) {
        remote.text.withCString { fleetsync_channel_exec(channel, $0) }
      }
      try pump(
        channel, stdin: stdin ?? [], stdout: &stdout, stderr: &stderr, control: control, deadline: deadline)
    } catch let error as FleetError {
      if error.code == .cancelled || error.code == .sshTimeout {
        if remote.pgid(in: stdout) == nil && error.code == .cancelled {
          awaitGroupID(channel, remote: remote, stdout: &stdout)
        }
        killRemote(pgid: remote.pgid(in: stdout), token: remote.token)
      }
      freeChannel(channel)
      throw error
    }
    let (status, signal) = try finish(channel, control, deadline)
    let (output, markedStatus) = remote.strip(stdout)
    guard let markedStatus else {
      if let signal {
        let number = ExecResult.signalNumbers[signal].map { 128 + $0 } ?? (status == 0 ? 128 : status)
        return ExecResult(stdout: output, stderr: stderr, exitStatus: number, exitSignal: signal)
      }
      throw FleetError(
        .sshConnectionLost,
        "connection to \(endpoint) was lost before the command finished (no exit status arrived); "
          + "check whether it ran, then retry")
    }
    logger.debug("command finished", metadata: ["host": "\(endpoint)", "status": "\(markedStatus)"])
    return ExecResult(stdout: output, stderr: stderr, exitStatus: markedStatus, exitSignal: signal)
  }

  /// Runs a short helper command (no wrapper) and returns its status and stderr; for chown/mv/kill.
  func execPlain(_ command: String, control: OperationControl, deadline: Deadline) throws -> (Int32, String) {
    let channel = try openChannel(control, deadline)
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    do {
      try retry(control, deadline, what: "starting a helper command", code: .sshChannel) {
        command.withCString { fleetsync_channel_exec(channel, $0) }
      }
      try pump(channel, stdin: [], stdout: &stdout, stderr: &stderr, control: control, deadline: deadline)
    } catch {
      freeChannel(channel)
      throw error
    }
    let (status, signal) = try finish(channel, control, deadline)
    return (signal == nil ? status : 128, String(decoding: stderr, as: UTF8.self))
  }

  private func openChannel(_ control: OperationControl, _ deadline: Deadline) throws -> OpaquePointer {
    try retryPointer(control, deadline, what: "opening a channel", code: .sshChannel) {
      fleetsync_channel_open_session(raw)
    }
  }

  /// Moves stdin out and both output streams in until the remote side closes both.
  ///
  /// Both streams are drained until both say EAGAIN before waiting on the socket, so a command that
  /// fills stderr while we wait for stdout (or the reverse) cannot deadlock.
  private func pump(
    _ channel: OpaquePointer, stdin: [UInt8], stdout: inout [UInt8], stderr: inout [UInt8],
    control: OperationControl, deadline: Deadline
  ) throws {
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    var stdinOffset = 0
    var eofSent = false
    while true {
      var progressed = false
      if !eofSent {
        if stdinOffset < stdin.count {
          let rc = stdin.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) {
              fleetsync_channel_write(
                channel, $0.baseAddress! + stdinOffset, min(p.count - stdinOffset, 256 * 1024))
            }
          }
          if rc > 0 {
            stdinOffset += rc
            progressed = true
          } else if rc != Int(LIBSSH2_ERROR_EAGAIN) && rc < 0 {
            throw failure(Int32(rc), what: "sending input", code: .sshChannel)
          }
        }
        if stdinOffset == stdin.count {
          let rc = libssh2_channel_send_eof(channel)
          if rc == 0 {
            eofSent = true
            progressed = true
          } else if rc != LIBSSH2_ERROR_EAGAIN {
            throw failure(rc, what: "closing input", code: .sshChannel)
          }
        }
      }
      let outDone = try drain(channel, stream: 0, into: &stdout, buffer: &buffer, progressed: &progressed)
      let errDone = try drain(channel, stream: 1, into: &stderr, buffer: &buffer, progressed: &progressed)
      if outDone && errDone { return }
      if !progressed { try wait(control, deadline, what: "running the command") }
    }
  }

  /// Reads one stream until EAGAIN (false) or end of stream (true).
  private func drain(
    _ channel: OpaquePointer, stream: Int32, into output: inout [UInt8], buffer: inout [UInt8],
    progressed: inout Bool
  ) throws -> Bool {
    while true {
      let rc = buffer.withUnsafeMutableBufferPointer { p in
        p.withMemoryRebound(to: CChar.self) {
          fleetsync_channel_read(channel, stream, $0.baseAddress, $0.count)
        }
      }
      if rc > 0 {
        output.append(contentsOf: buffer[0..<rc])
        progressed = true
      } else if rc == 0 {
        return libssh2_channel_eof(channel) != 0
      } else if rc == Int(LIBSSH2_ERROR_EAGAIN) {
        return false
      } else {
        throw failure(Int32(rc), what: "reading output", code: .sshChannel)
      }
    }
  }

  /// Closes the channel and reads exit status and signal (only reliable after the close).
  private func finish(_ channel: OpaquePointer, _ control: OperationControl, _ deadline: Deadline) throws
    -> (Int32, String?)
  {
    defer { freeChannel(channel) }
    try retry(control, deadline, what: "closing the channel", code: .sshChannel) {
      libssh2_channel_close(channel)
    }
    try retry(control, deadline, what: "closing the channel", code: .sshChannel) {
      libssh2_channel_wait_closed(channel)
    }
    let status = libssh2_channel_get_exit_status(channel)
    var signal: UnsafeMutablePointer<CChar>?
    var signalLength = 0
    _ = libssh2_channel_get_exit_signal(channel, &signal, &signalLength, nil, nil, nil, nil)
    var signalName: String?
    if let signal {
      if signalLength > 0 { signalName = String(cString: signal) }
      libssh2_free(raw, signal)
    }
    return (status, signalName)
  }

  /// Frees a channel, closing it if needed (bounded; a dead transport leaves it to the session's free).
  private func freeChannel(_ channel: OpaquePointer) {
    guard brokenReason == nil else { return }
    let control = OperationControl()
    let deadline = Deadline(after: .seconds(2))
    _ = try? retry(control, deadline, what: "freeing a channel", code: .sshChannel) {
      libssh2_channel_free(channel)
    }
  }

  /// After a cancel that came before the wrapper's first line: reads stdout a little longer (at most
  /// 2 s) for the process group id, so a command that was just starting is still killed.
  private func awaitGroupID(_ channel: OpaquePointer, remote: RemoteCommand, stdout: inout [UInt8]) {
    let control = OperationControl()
    let deadline = Deadline(after: .seconds(2))
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while remote.pgid(in: stdout) == nil && !deadline.hasPassed && brokenReason == nil {
      let rc = buffer.withUnsafeMutableBufferPointer { p in
        p.withMemoryRebound(to: CChar.self) { fleetsync_channel_read(channel, 0, $0.baseAddress, $0.count) }
      }
      if rc > 0 {
        stdout.append(contentsOf: buffer[0..<rc])
      } else if rc == Int(LIBSSH2_ERROR_EAGAIN) {
        guard (try? wait(control, deadline, what: "reading the process group")) != nil else { return }
      } else {
        return
      }
    }
  }

  /// Kills the remote command's process group over a second channel: TERM, then KILL.
  ///
  /// Without the group id (cancelled before the first line arrived) the group leader is found by its
  /// token; the `[x]` pattern keeps `pgrep` from matching the killing shell itself.
  func killRemote(pgid: Int?, token: String) {
    guard brokenReason == nil else {
      logger.debug("cannot kill the remote command: connection is gone", metadata: ["host": "\(endpoint)"])
      return
    }
    let first = token.prefix(1)
    let pattern = "FS[\(first)]\(token.dropFirst())P"
    let find = pgid.map { String($0) } ?? "$(pgrep -o -f '\(pattern)')"
    let script =
      "p=\(find); [ -n \"$p\" ] && { kill -TERM -- \"-$p\"; sleep 0.3; kill -KILL -- \"-$p\"; } 2>/dev/null; true"
    let control = OperationControl()
    do {
      _ = try execPlain(script, control: control, deadline: Deadline(after: .seconds(3)))
      logger.debug("killed remote command", metadata: ["host": "\(endpoint)", "pgid": "\(pgid ?? -1)"])
    } catch {
      logger.debug("could not kill remote command", metadata: ["host": "\(endpoint)", "error": "\(error)"])
      if let error = error as? FleetError, error.code == .sshTimeout { brokenReason = error }
    }
  }
}
