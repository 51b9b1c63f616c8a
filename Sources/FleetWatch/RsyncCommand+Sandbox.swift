import CLandlock
import Logging

extension RsyncCommand {
  /// Runs rsync with `arguments` in `sandbox`, where it may also read `reading`, to its end; reads
  /// the sandbox refused are logged with their paths.
  func executeConfined(_ arguments: [String], reading: [String], in sandbox: SenderSandbox) async
    -> Execution
  {
    await executeSpawned(confined: true) {
      let (ruleset, executable) = try await sandbox.ruleset(reading: reading)
      return try await ConfinedProcess.run(
        executable: executable, arguments: arguments, ruleset: ruleset, tailCapacity: Self.outputTailBytes,
        priority: priority)
    }
  }

  /// Runs rsync with `arguments`, unconfined, to its end, started as a confined run is (so that it
  /// takes its ``priority`` before it runs; swift-subprocess has no such hook on Linux).
  func executeUnconfined(_ arguments: [String]) async -> Execution {
    await executeSpawned(confined: false) {
      try await ConfinedProcess.run(
        executable: SenderSandbox.resolveExecutable(config.rsyncPath) ?? config.rsyncPath,
        arguments: arguments,
        ruleset: -1, tailCapacity: Self.outputTailBytes, priority: priority)
    }
  }

  /// What a run started by ``ConfinedProcess`` ended with.
  private func executeSpawned(confined: Bool, _ start: () async throws -> ConfinedProcess.Result) async
    -> Execution
  {
    do {
      let result = try await start()
      let (out, err) = (result.stdout.text, result.stderr.text)
      if confined { SenderSandbox.logRefusedReads(err, logger: logger) }
      switch result.termination {
      case .exited(let code):
        return .exited(code: code, stdout: out, stderr: err, stderrComplete: result.stderr.dropped == 0)
      case .signaled(let signal):
        return .ended(.failed(kind: .rsync, message: "rsync was killed by signal \(signal)"))
      }
    } catch is CancellationError {
      return .ended(.failed(kind: .rsync, message: "the transfer was cancelled"))
    } catch let error as ConfinedProcess.SpawnError where error.step == FLEET_SPAWN_EXEC {
      return .ended(
        .failed(
          kind: .io,
          message: "cannot run rsync ('\(config.rsyncPath)'): \(error); install rsync or set rsyncPath"))
    } catch  where !confined {
      return .ended(.failed(kind: .io, message: "running rsync ('\(config.rsyncPath)') failed: \(error)"))
    } catch {
      return .ended(
        .failed(
          kind: .io,
          message: "cannot start rsync confined to the source: \(error); nothing was sent. "
            + "Check the kernel log (dmesg) and `cat /sys/kernel/security/lsm` (it must list landlock)"))
    }
  }
}

extension SenderSandbox {
  /// The sandbox for `core`'s transfers, or nil; says once, in the log and in the status
  /// (``WatchStatus/senderConfined``), whether the sender is confined.
  static func start(for core: EngineCore) -> SenderSandbox? {
    switch prepare(core.config) {
    case .confined(let sandbox):
      core.update { $0.senderConfined = true }
      core.logger.info(
        "the rsync sender is confined to the source (Landlock)", metadata: ["abi": "\(sandbox.abi)"])
      return sandbox
    case .unconfined(let reason):
      core.update { $0.senderConfined = false }
      core.logger.warning(
        """
        the rsync sender is NOT confined to the source: \(reason). Every listed path is still checked \
        (never sent through a symlink), but a symlink swapped in while a transfer starts could make \
        rsync read outside the source
        """)
      return nil
    }
  }
}
