import CLibSSH2
import FleetCore
import FoundationEssentials
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A server's host key as the handshake presented it.
struct HostKey {
  /// The raw key blob.
  let blob: [UInt8]
  /// OpenSSH's name of the key type, e.g. `ssh-ed25519`.
  let typeName: String
  /// The `LIBSSH2_KNOWNHOST_KEY_*` bits for `libssh2_knownhost_checkp`.
  let knownHostBits: Int32
  /// `SHA256:...` as OpenSSH prints it.
  let fingerprint: String

  /// The key in `known_hosts` form: `TYPE BASE64`.
  var knownHostsText: String { "\(typeName) \(Data(blob).base64EncodedString())" }
}

/// Host-key verification against an OpenSSH `known_hosts` file, with `strict` and `accept-new` policies.
enum HostKeyVerifier {
  /// Reads the session's host key and checks it against `file` under `policy`.
  static func verify(session: Session, file: String, policy: HostKeyPolicy) throws {
    let key = try hostKey(of: session)
    let endpoint = session.endpoint
    if let line = revokedLine(of: key, in: file) {
      throw FleetError(
        .sshHostKeyRevoked,
        "the host key of \(endpoint) (\(key.typeName) \(key.fingerprint)) is revoked at \(file):\(line); "
          + "connection refused under every policy. Give the host a new key, or remove that @revoked line "
          + "if the revocation was a mistake")
    }
    switch try check(session: session, key: key, file: file) {
    case .match:
      return
    case .mismatch(let line):
      throw changedError(endpoint, key, file: file, line: line)
    case .notFound:
      guard policy == .acceptNew else {
        let keyscanType =
          key.typeName == "ssh-ed25519" ? "ed25519" : key.typeName.hasPrefix("ecdsa") ? "ecdsa" : "rsa"
        throw FleetError(
          .sshHostKeyUnknown,
          "the host key of \(endpoint) is not known: it offered \(key.typeName) key \(key.fingerprint), "
            + "which is not in \(file). Check that fingerprint on the host (ssh-keygen -lf "
            + "/etc/ssh/ssh_host_\(keyscanType)_key.pub), then record it with `ssh-keyscan -p \(endpoint.port) "
            + "-t \(keyscanType) \(endpoint.host) >> \(file)` or connect once with --accept-new")
      }
      try record(session: session, key: key, file: file)
    }
  }

  private enum Outcome {
    case match
    case mismatch(line: Int?)
    case notFound
  }

  /// The session's host key, its type and fingerprint.
  static func hostKey(of session: Session) throws -> HostKey {
    var length = 0
    var type: Int32 = 0
    guard let pointer = libssh2_session_hostkey(session.raw, &length, &type), length > 0 else {
      throw FleetError(.sshProtocol, "\(session.endpoint) sent no host key")
    }
    let blob = pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
      Array(UnsafeBufferPointer(start: $0, count: length))
    }
    let (name, bits): (String, Int32)
    switch type {
    case LIBSSH2_HOSTKEY_TYPE_ED25519: (name, bits) = ("ssh-ed25519", LIBSSH2_KNOWNHOST_KEY_ED25519)
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
      (name, bits) = ("ecdsa-sha2-nistp256", LIBSSH2_KNOWNHOST_KEY_ECDSA_256)
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
      (name, bits) = ("ecdsa-sha2-nistp384", LIBSSH2_KNOWNHOST_KEY_ECDSA_384)
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
      (name, bits) = ("ecdsa-sha2-nistp521", LIBSSH2_KNOWNHOST_KEY_ECDSA_521)
    case LIBSSH2_HOSTKEY_TYPE_RSA: (name, bits) = ("ssh-rsa", LIBSSH2_KNOWNHOST_KEY_SSHRSA)
    default:
      throw FleetError(.sshProtocol, "\(session.endpoint) offered a host key of unsupported type \(type)")
    }
    guard let hash = libssh2_hostkey_hash(session.raw, LIBSSH2_HOSTKEY_HASH_SHA256) else {
      throw FleetError(.sshProtocol, "cannot hash the host key of \(session.endpoint)")
    }
    let digest = hash.withMemoryRebound(to: UInt8.self, capacity: 32) {
      Array(UnsafeBufferPointer(start: $0, count: 32))
    }
    return HostKey(blob: blob, typeName: name, knownHostBits: bits, fingerprint: fingerprint(sha256: digest))
  }

  /// `SHA256:` and the unpadded base64 of a digest, as `ssh-keygen -l` prints it.
  static func fingerprint(sha256 digest: [UInt8]) -> String {
    var text = Data(digest).base64EncodedString()
    while text.hasSuffix("=") { text.removeLast() }
    return "SHA256:" + text
  }

  /// Checks the key against the file's current contents.
  private static func check(session: Session, key: HostKey, file: String) throws -> Outcome {
    guard let kh = libssh2_knownhost_init(session.raw) else {
      throw FleetError(.internal, "libssh2_knownhost_init failed")
    }
    defer { libssh2_knownhost_free(kh) }
    // Lines are fed one by one (libssh2's readfile stops at the first line it does not understand,
    // e.g. @cert-authority); each key text remembers its line for the "changed" message.
    var lineOfKey: [String: Int] = [:]
    for (number, line) in readLines(file).enumerated() {
      let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
      if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix("@") { continue }
      let rc = line.withCString {
        libssh2_knownhost_readline(kh, $0, strlen($0), LIBSSH2_KNOWNHOST_FILE_OPENSSH)
      }
      if rc != 0 { continue }
      let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
      if fields.count >= 3, lineOfKey[String(fields[2])] == nil { lineOfKey[String(fields[2])] = number + 1 }
    }
    var entry: UnsafeMutablePointer<libssh2_knownhost>?
    let plain = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW
    func checkp(_ typemask: Int32) -> Int32 {
      key.blob.withUnsafeBufferPointer { blob in
        blob.withMemoryRebound(to: CChar.self) {
          libssh2_knownhost_checkp(
            kh, session.endpoint.host, Int32(session.endpoint.port), $0.baseAddress, $0.count, typemask,
            &entry)
        }
      }
    }
    var rc = checkp(plain | key.knownHostBits)
    if rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND {
      // libssh2 compares keys of the offered type only. A host recorded with a key of another type,
      // but not with this one, has changed its key: with no type bits, any recorded key of the host
      // is compared, and a difference is a mismatch.
      rc = checkp(plain)
    }
    switch rc {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
      return .match
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
      let recorded = entry.flatMap { $0.pointee.key.map { String(cString: $0) } }
      return .mismatch(line: recorded.flatMap { lineOfKey[$0] })
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
      return .notFound
    default:
      throw FleetError(.sshProtocol, "cannot check the host key of \(session.endpoint) against \(file)")
    }
  }

  private static func changedError(_ endpoint: SSHEndpoint, _ key: HostKey, file: String, line: Int?)
    -> FleetError
  {
    let at = line.map { "\(file):\($0)" } ?? file
    return FleetError(
      .sshHostKeyChanged,
      "REMOTE HOST IDENTIFICATION HAS CHANGED for \(endpoint): it offered \(key.typeName) key "
        + "\(key.fingerprint), but \(at) records a different key. Someone may be intercepting the "
        + "connection (man-in-the-middle), or the host was reinstalled. Connection refused. If the change "
        + "is expected, remove the old key with `ssh-keygen -R '\(endpoint.knownHostsName)' -f \(file)` "
        + "and add the new one")
  }

  /// Appends the key under an exclusive `flock`, re-checking first: many connections may accept new
  /// hosts at once, and another one may have recorded this host (or a different key for it) meanwhile.
  private static func record(session: Session, key: HostKey, file: String) throws {
    let fd = open(file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
      throw FleetError(
        .io,
        "cannot open \(file) to record the host key of \(session.endpoint): \(String(cString: strerror(errno)))"
      )
    }
    defer { close(fd) }
    while flock(fd, LOCK_EX) != 0 {
      guard errno == EINTR else { throw FleetError(.io, "cannot lock \(file)") }
    }
    defer { flock(fd, LOCK_UN) }
    switch try check(session: session, key: key, file: file) {
    case .match: return
    case .mismatch(let line): throw changedError(session.endpoint, key, file: file, line: line)
    case .notFound: break
    }
    var text = "\(session.endpoint.knownHostsName) \(key.knownHostsText)\n"
    var size = stat()
    if fstat(fd, &size) == 0 && size.st_size > 0 {
      var last: UInt8 = 0
      if pread(fd, &last, 1, size.st_size - 1) == 1 && last != UInt8(ascii: "\n") { text = "\n" + text }
    }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count, fsync(fd) == 0 else {
      throw FleetError(.io, "cannot append the host key of \(session.endpoint) to \(file)")
    }
    session.logger.info(
      "recorded new host key", metadata: ["host": "\(session.endpoint)", "fingerprint": "\(key.fingerprint)"])
  }

  /// The line of `file` that revokes `key` (`@revoked HOSTS TYPE BASE64`), if any. A revoked key is
  /// refused for every host, whatever the host patterns say.
  static func revokedLine(of key: HostKey, in file: String) -> Int? {
    let blob = Data(key.blob).base64EncodedString()
    for (number, line) in readLines(file).enumerated() {
      let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
      if fields.count >= 4, fields[0] == "@revoked", fields[3] == blob { return number + 1 }
    }
    return nil
  }

  /// The file's lines; none if it does not exist.
  private static func readLines(_ path: String) -> [String] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { break }
      bytes.append(contentsOf: buffer[0..<n])
    }
    return bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map {
      String(decoding: $0, as: UTF8.self)
    }
  }
}
