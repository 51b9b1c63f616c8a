import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// The pure parts of `rotate-secrets`: the store's pending secrets, the secret files' formats, and
/// which modules `--limit` selects.
@Suite struct SecretRotationUnitTests {
  func storePath() throws -> String {
    let dir = NSTemporaryDirectory() + "fleetsync-rotation-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/inv.secrets"
  }

  @Test func aPendingSecretIsSavedBesideTheCurrentOneAndResumedAfterAReload() throws {
    let path = try storePath()
    var store = try SecretStore(path: path)
    let module = RsyncModule(name: "home", path: "/srv/x", secretFile: nil)
    let old = try store.secret(backup: "bk1", module: module)
    try store.save()

    let next = store.beginRotation("bk1/home")
    #expect(next != old)
    #expect(store.beginRotation("bk1/home") == next, "one rotation, one next secret")
    try store.save()
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text.contains("bk1/home \(old.revealed)\n"))
    #expect(text.contains("bk1/home+next \(next.revealed)\n"))
    let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    #expect(mode == 0o600)

    var reloaded = try SecretStore(path: path)
    #expect(reloaded.current("bk1/home") == old)
    #expect(reloaded.pending("bk1/home") == next)
    #expect(reloaded.pendingKeys == ["bk1/home"])
    #expect(try reloaded.secret(backup: "bk1", module: module) == old, "up keeps the current secret")
    #expect(reloaded.beginRotation("bk1/home") == next, "a rotation cut off resumes with its secret")
  }

  @Test func finishingARotationKeepsOnlyTheNewSecret() throws {
    let path = try storePath()
    var store = try SecretStore(path: path)
    let module = RsyncModule(name: "home", path: "/srv/x", secretFile: nil)
    let old = try store.secret(backup: "bk1", module: module)
    let next = store.beginRotation("bk1/home")
    try store.save()
    store.finishRotation("bk1/home")
    try store.save()
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(!text.contains("+next"))
    #expect(!text.contains(old.revealed))
    var reloaded = try SecretStore(path: path)
    #expect(reloaded.pending("bk1/home") == nil)
    #expect(try reloaded.secret(backup: "bk1", module: module) == next)
  }

  @Test func daemonSecretsFileLinesAreReadAndReplacedOneUserAtATime() throws {
    let old = Secret("old-secret")
    let fresh = Secret("new-secret")
    let file = Array(
      (SecretFiles.daemonLine(module: "home", old) + SecretFiles.daemonLine(module: "home2", Secret("other")))
        .utf8)
    #expect(SecretFiles.daemonSecret(module: "home", in: file) == old)
    #expect(SecretFiles.daemonSecret(module: "home2", in: file) == Secret("other"))
    #expect(SecretFiles.daemonSecret(module: "hom", in: file) == nil, "a prefix of a user is not the user")
    let replaced = try #require(SecretFiles.replacingDaemonSecret(module: "home", with: fresh, in: file))
    #expect(String(decoding: replaced, as: UTF8.self) == "fs-home:new-secret\nfs-home2:other\n")
    #expect(SecretFiles.replacingDaemonSecret(module: "proj", with: fresh, in: file) == nil)
  }

  @Test func passwordFilesHoldTheSecretOnTheirFirstLine() {
    let secret = Secret("s3cret")
    #expect(SecretFiles.password(secret) == Array("s3cret\n".utf8))
    #expect(SecretFiles.password(in: SecretFiles.password(secret)) == secret)
    #expect(SecretFiles.password(in: Array("s3cret\r\n".utf8)) == secret)
    #expect(SecretFiles.password(in: []) == nil)
  }

  static let scopeInventory = """
    groups:
      web: {}
    backups:
      bk1:
        address: 10.0.0.21
        daemons:
          main:
            modules:
              home: /srv/backup/home
              proj: /srv/backup/proj
      bk2:
        address: 10.0.0.22
        daemons:
          main:
            modules:
              logs: { path: /srv/backup/logs, secret_file: /etc/fleet/logs.secret }
    sources:
      nfs1:
        address: 10.0.0.11
        groups: [web]
        directories:
          home: { path: /srv/nfs/home, to: [bk1/home] }
          logs: { path: /srv/nfs/logs, to: [bk2/logs] }
      nfs2:
        address: 10.0.0.12
        directories:
          proj: { path: /srv/nfs/proj, to: [bk1/proj] }
    """

  func scope(_ limit: [String]) throws -> [String] {
    let inventory = try Inventory.parse(yaml: Self.scopeInventory, file: "/tmp/inv.yaml")
    let limit = Set(limit)
    let selected =
      limit.isEmpty
      ? inventory.hosts
      : inventory.hosts.filter { limit.contains($0.name) || !limit.isDisjoint(with: $0.groups) }
    return RotationScope.modules(of: inventory, selected: selected).map(\.key)
  }

  @Test func limitSelectsTheModulesOfBackupsAndTheModulesSourcesSendTo() throws {
    #expect(try scope([]) == ["bk1/home", "bk1/proj", "bk2/logs"])
    #expect(try scope(["bk1"]) == ["bk1/home", "bk1/proj"])
    #expect(try scope(["nfs1"]) == ["bk1/home", "bk2/logs"])
    #expect(try scope(["web"]) == ["bk1/home", "bk2/logs"], "a group selects its hosts")
    #expect(try scope(["nfs2", "bk2"]) == ["bk1/proj", "bk2/logs"])
  }

  @Test func aModuleCarriesEveryEndOfItsSecret() throws {
    let inventory = try Inventory.parse(yaml: Self.scopeInventory, file: "/tmp/inv.yaml")
    let modules = RotationScope.modules(of: inventory, selected: inventory.hosts.filter { $0.name == "bk2" })
    let logs = try #require(modules.first)
    #expect(logs.secretFile == "/etc/fleet/logs.secret")
    #expect(logs.daemon == "main")
    #expect(logs.watchers == [RotationModule.Watcher(host: "nfs1", instance: "logs:bk2:logs")])
    #expect(logs.hosts == ["bk2", "nfs1"], "the watcher's host, though --limit names only bk2")
  }
}
