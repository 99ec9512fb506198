//! Users: what services and operators do to one token subject without knowing its
//! rooms — send it an event, close its sockets, revoke its tokens — on every node.

pub mod routes;
