import FleetCore
import Foundation
import Testing

@testable import FleetSSH

@Suite struct EndpointParsingTests {
  @Test func parsesUserHostPort() throws {
    #expect(
      try SSHEndpoint(parsing: "admin@10.0.0.5:2222")
        == SSHEndpoint(host: "10.0.0.5", port: 2222, user: "admin"))
    #expect(
      try SSHEndpoint(parsing: "host.example") == SSHEndpoint(host: "host.example", port: 22, user: "root"))
    #expect(
      try SSHEndpoint(parsing: "u@[fe80::1]:2200") == SSHEndpoint(host: "fe80::1", port: 2200, user: "u"))
    #expect(try SSHEndpoint(parsing: " u@h ") == SSHEndpoint(host: "h", port: 22, user: "u"))
  }

  @Test(arguments: ["", "u@", "h:0", "h:99999", "h:x", "[::1", "@h"])
  func refusesBadText(_ text: String) {
    #expect(throws: FleetError.self) { try SSHEndpoint(parsing: text) }
  }

  @Test func describesForMessagesAndKnownHosts() {
    #expect(SSHEndpoint(host: "h", port: 22, user: "u").description == "u@h:22")
    #expect(SSHEndpoint(host: "h", port: 22).knownHostsName == "h")
    #expect(SSHEndpoint(host: "h", port: 2222).knownHostsName == "[h]:2222")
  }
}

@Suite struct RemoteCommandTests {
  @Test func stripsMarkersAndKeepsOutputExactly() throws {
    let remote = try RemoteCommand("true")
    for output in ["", "a", "a\n", "\n\n", "no newline at end", "FSfakeE3\n"] {
      let raw = Array("FS\(remote.token)P4242\n\(output)\nFS\(remote.token)E7\n".utf8)
      let (body, status) = remote.strip(raw)
      #expect(String(decoding: body, as: UTF8.self) == output)
      #expect(status == 7)
      #expect(remote.pgid(in: raw) == 4242)
    }
  }

  @Test func missingStatusMarkerIsReported() throws {
    let remote = try RemoteCommand("true")
    let (body, status) = remote.strip(Array("FS\(remote.token)P1\npartial output".utf8))
    #expect(status == nil)
    #expect(String(decoding: body, as: UTF8.self) == "partial output")
  }

  @Test func tokensDiffer() throws {
    #expect(try RemoteCommand("x").token != RemoteCommand("x").token)
  }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")))
struct KeyFileTests {
  @Test(arguments: [("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "ssh-rsa")])
  func tellsKeyTypeEvenWhenEncrypted(_ type: String, _ expected: String) throws {
    let dir = NSTemporaryDirectory() + "fleetsync-keytest-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try LocalSSHD.sh("ssh-keygen -q -t \(type) -N 'secret words' -f \(dir)/k")
    #expect(PrivateKeyFile.keyType(path: "\(dir)/k") == expected)
    try LocalSSHD.sh("ssh-keygen -q -t \(type) -m PEM -N '' -f \(dir)/pem")
    let pemType = PrivateKeyFile.keyType(path: "\(dir)/pem")
    #expect(pemType == (type == "rsa" ? "ssh-rsa" : type == "ecdsa" ? "ecdsa" : "ssh-ed25519"))
  }

  @Test func fingerprintMatchesSSHKeygen() throws {
    let dir = NSTemporaryDirectory() + "fleetsync-fp-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try LocalSSHD.sh("ssh-keygen -q -t ed25519 -N '' -f \(dir)/k")
    let pub = try String(contentsOfFile: "\(dir)/k.pub", encoding: .utf8).split(separator: " ")
    let blob = [UInt8](Data(base64Encoded: String(pub[1]))!)
    let digest = try LocalSSHD.sh("printf %s \(pub[1]) | base64 -d | sha256sum | cut -c1-64")
    var bytes: [UInt8] = []
    var hex = Substring(digest.prefix(64))
    while !hex.isEmpty {
      bytes.append(UInt8(hex.prefix(2), radix: 16)!)
      hex = hex.dropFirst(2)
    }
    let keygen = try LocalSSHD.sh("ssh-keygen -lf \(dir)/k.pub").split(separator: " ")[1]
    #expect(HostKeyVerifier.fingerprint(sha256: bytes) == String(keygen))
    #expect(!blob.isEmpty)
  }
}

@Suite struct SSHClientScopeTests {
  /// Runs a body that throws, and hands back the client it was given.
  func clientOfAThrowingBody() async -> SSHClient? {
    var given: SSHClient?
    do {
      try await SSHClient.withClient(threads: 1) { client in
        given = client
        throw FleetError(.invalidInput, "--limit names nope")
      }
    } catch {
      #expect((error as? FleetError)?.code == .invalidInput, "the body's error comes through")
    }
    return given
  }

  @Test func theClientIsShutDownWhenTheBodyThrows() async throws {
    let client = try #require(await clientOfAThrowingBody())
    let options = SSHOptions(identity: .agent, knownHostsFile: "/dev/null", connectTimeout: .seconds(1))
    let error = await #expect(throws: FleetError.self) {
      try await client.connect(SSHEndpoint(host: "127.0.0.1", port: 1), options: options)
    }
    // Work refused by the stopped pool is a bug of the caller, not a cancellation (which would exit 130).
    #expect(error?.code == .internal, "\(String(describing: error))")
    #expect(error?.message.contains("not running") == true, "\(String(describing: error))")
  }
}
