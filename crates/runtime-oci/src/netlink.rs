//! The few rtnetlink requests a Pod's network needs (the veth pair, loopback, the address and
//! the default route), sent on a netlink socket instead of running `ip`: each `ip` run is a
//! process, and a sandbox needed two.

use crate::error::{Error, Result};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

/// A route netlink socket, in the network namespace of the thread that opened it.
pub(crate) struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(failure("open a socket"))?;
        socket.bind_auto().map_err(failure("bind a socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(failure("connect a socket"))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request and waits for the kernel's acknowledgement.
    fn request(&mut self, what: &str, message: RouteNetlinkMessage, create: bool) -> Result<()> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        if create {
            header.flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        let failed = failure(what);
        self.socket.send(&buf, 0).map_err(&failed)?;
        loop {
            let (reply, _) = self.socket.recv_from_full().map_err(&failed)?;
            let mut at = 0;
            while at < reply.len() {
                let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[at..])
                    .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
                at += answer.header.length as usize;
                if answer.header.sequence_number != self.sequence {
                    continue;
                }
                if let NetlinkPayload::Error(e) = answer.payload {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(failed(e.to_io())),
                    };
                }
                if answer.header.length == 0 {
                    break;
                }
            }
        }
    }

    /// Makes a veth pair: `host` here, attached to the bridge `bridge_index` and up, and
    /// `peer` in the network namespace open as `netns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        bridge_index: u32,
        peer: &str,
        netns: &std::fs::File,
    ) -> Result<()> {
        let mut far = LinkMessage::default();
        far.attributes.push(LinkAttribute::IfName(peer.to_string()));
        far.attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes
            .push(LinkAttribute::IfName(host.to_string()));
        link.attributes
            .push(LinkAttribute::Controller(bridge_index));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(far))),
        ]));
        self.request(
            &format!("add veth {host}"),
            RouteNetlinkMessage::NewLink(link),
            true,
        )
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("set link {index} up"),
            RouteNetlinkMessage::SetLink(link),
            false,
        )
    }

    /// Removes a link (both ends, for a veth).
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(link),
            false,
        )
    }

    /// Adds `ip/prefix` to a link.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut addr = AddressMessage::default();
        addr.header.family = AddressFamily::Inet;
        addr.header.prefix_len = prefix;
        addr.header.index = index;
        addr.attributes
            .push(AddressAttribute::Local(IpAddr::V4(ip)));
        addr.attributes
            .push(AddressAttribute::Address(IpAddr::V4(ip)));
        self.request(
            &format!("add address {ip}/{prefix}"),
            RouteNetlinkMessage::NewAddress(addr),
            true,
        )
    }

    /// Adds the default route through `gateway` on a link.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        route.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(route),
            true,
        )
    }
}

/// An error of a netlink request.
fn failure(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Command {
        command: format!("netlink: {what}"),
        message: e.to_string(),
    }
}

/// A link's index in the calling thread's network namespace.
pub(crate) fn link_index(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(Error::sys(format!("find link {name}")))
}
