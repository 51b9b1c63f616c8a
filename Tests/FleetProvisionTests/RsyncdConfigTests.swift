import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// The rsync daemon config the controller renders for a backup host, byte for byte: only a module's
/// senders may write it; its read-only views admit every host of the inventory (`restore --to`).
@Suite struct RsyncdConfigTests {
  @Test func renderedTextIsStable() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    let conf = String(decoding: fleet["bk1"].state.files[Layout.rsyncdConf("main")] ?? [], as: UTF8.self)
    #expect(conf == Self.expected)
  }

  static let expected = """
    # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
    # rsync daemon instance main on bk1
    port = 8730
    pid file = /run/fleetsync/rsyncd-main.pid
    lock file = /run/fleetsync/rsyncd-main.lock
    log file = /var/log/fleetsync/rsyncd-main.log
    use chroot = yes
    max connections = 64
    uid = nobody
    gid = nogroup
    read only = no
    list = no
    strict modes = yes
    timeout = 600
    socket options = TCP_NODELAY

    [home]
      path = /srv/backup/home
      comment = managed by fleetsync
      fake super = yes
      auth users = fs-home
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 10.0.0.11
      hosts deny = *
      filter = + /.fleetsync-versions/ + /.fleetsync-versions/.hold-* - /.fleetsync-versions/*/**
      pre-xfer exec = /var/lib/fleetsync/bin/fleetsync-xfer-check

    [home.mirror]
      path = /srv/backup/home
      comment = mirror of home, read only, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-home
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 127.0.0.1 10.0.0.11 10.0.0.12 10.0.0.21
      hosts deny = *
      exclude = /.fleetsync-versions/

    [home.versions]
      path = /srv/backup/home/.fleetsync-versions
      comment = versions of home, read only, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-home
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 127.0.0.1 10.0.0.11 10.0.0.12 10.0.0.21
      hosts deny = *

    [proj]
      path = /srv/backup/proj
      comment = managed by fleetsync
      fake super = yes
      auth users = fs-proj
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 10.0.0.12
      hosts deny = *
      filter = + /.fleetsync-versions/ + /.fleetsync-versions/.hold-* - /.fleetsync-versions/*/**
      pre-xfer exec = /var/lib/fleetsync/bin/fleetsync-xfer-check

    [proj.mirror]
      path = /srv/backup/proj
      comment = mirror of proj, read only, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-proj
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 127.0.0.1 10.0.0.11 10.0.0.12 10.0.0.21
      hosts deny = *
      exclude = /.fleetsync-versions/

    [proj.versions]
      path = /srv/backup/proj/.fleetsync-versions
      comment = versions of proj, read only, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-proj
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 127.0.0.1 10.0.0.11 10.0.0.12 10.0.0.21
      hosts deny = *

    """
}
