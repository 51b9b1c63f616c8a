import FleetCore
import FleetWatch

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Checks made before anything starts, so that bad input stops the agent with exit status 64 and
/// a message that says what to fix, instead of a running process that can never succeed.
enum Preflight {
  /// Checks the source directory and the password file.
  static func check(_ watch: WatchConfig) throws {
    try checkSource(watch.source)
    if let passwordFile = watch.passwordFile { try checkPasswordFile(passwordFile) }
  }

  static func checkSource(_ path: String) throws {
    var info = stat()
    guard stat(path, &info) == 0 else {
      let reason = String(cString: strerror(errno))
      throw FleetError(
        .agentSource, "source \(path) cannot be watched: \(reason); create it or fix the source setting")
    }
    guard info.st_mode & S_IFMT == S_IFDIR else {
      throw FleetError(.agentSource, "source \(path) is not a directory; the source must be a directory")
    }
    guard access(path, R_OK | X_OK) == 0 else {
      throw FleetError(
        .agentSource, "source \(path) is not readable by this user; run as a user that can read it")
    }
  }

  static func checkPasswordFile(_ path: String) throws {
    var info = stat()
    guard stat(path, &info) == 0 else {
      let reason = String(cString: strerror(errno))
      throw FleetError(
        .agentPasswordFile, "password file \(path) cannot be used: \(reason); create it with mode 600")
    }
    guard info.st_mode & S_IFMT == S_IFREG else {
      throw FleetError(.agentPasswordFile, "password file \(path) is not a regular file")
    }
    let mode = info.st_mode & 0o777
    guard mode & 0o077 == 0 else {
      throw FleetError(
        .agentPasswordFile,
        "password file \(path) is readable by group or others (mode \(String(mode, radix: 8))); "
          + "run `chmod 600 \(path)` (rsync refuses such files too)")
    }
    guard access(path, R_OK) == 0 else {
      throw FleetError(.agentPasswordFile, "password file \(path) is not readable by this user")
    }
  }
}
