import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// The rsync daemon config the controller renders for a backup host, byte for byte.
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

    [home.versions]
      path = /srv/backup/home/.fleetsync-versions
      comment = versions of home, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-home
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 10.0.0.11
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

    [proj.versions]
      path = /srv/backup/proj/.fleetsync-versions
      comment = versions of proj, managed by fleetsync
      read only = yes
      fake super = yes
      auth users = fs-proj
      secrets file = /etc/fleetsync/rsyncd/main.secrets
      hosts allow = 10.0.0.12
      hosts deny = *

    """
}
