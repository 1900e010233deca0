//! Integration tests: real sockets against an in-process server on port 0.

mod api;
mod attendance;
mod cli;
mod cluster;
mod crash;
mod edge;
mod engagement;
mod facilitation;
mod faults;
mod formats;
mod join_check;
mod logs;
mod media;
mod privacy;
mod reach;
mod resume;
mod schema;
mod series;
mod side_rooms;
mod signal;
mod slow_client;
mod store;
mod support;
mod tokens;
mod web;
mod webhooks;
