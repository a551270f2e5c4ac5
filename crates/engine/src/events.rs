//! The engine's event bus: what changed (a namespace, a container, a cell, an image), as it
//! happens.
//!
//! One bounded [`tokio::sync::broadcast`] channel: publishing never waits and never fails, so a
//! subscriber cannot slow the engine down. A subscriber that falls more than
//! [`EventBus::DEFAULT_CAPACITY`] events behind loses its place: its next read is
//! [`SubscriptionError::Lagged`] and its subscription ends (the daemon turns that into
//! `Unavailable`). Events are not stored: a subscriber sees what happens while it is subscribed.
//!
//! Topics are the paths of `proto/testudo/events/v1/events.proto` (`/containers/exit`, ...);
//! this module knows them as [`EventKind`]s, and the daemon maps those to proto.

use std::time::SystemTime;

use tokio::sync::broadcast;

/// What happened, with the details of its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `/namespaces/create`.
    NamespaceCreated,
    /// `/namespaces/delete`.
    NamespaceDeleted,
    /// `/containers/create`.
    ContainerCreated {
        /// Its name.
        name: String,
        /// Its image reference.
        image: String,
    },
    /// `/containers/start`: a start, or a restart by the restart policy.
    ContainerStarted {
        /// The host pid of its init.
        pid: u32,
    },
    /// `/containers/exit`.
    ContainerExited {
        /// The exit status, or 128 + N when killed by signal N.
        exit_code: i32,
        /// When it ended.
        finished: SystemTime,
    },
    /// `/containers/delete`.
    ContainerDeleted {
        /// Its name.
        name: String,
        /// Its image reference.
        image: String,
    },
    /// `/containers/oom`: the kernel killed a process of the container for lack of memory.
    ContainerOom,
    /// `/cells/create`.
    CellCreated {
        /// Its id.
        id: String,
        /// Its name.
        name: String,
    },
    /// `/cells/delete`.
    CellDeleted {
        /// Its id.
        id: String,
        /// Its name.
        name: String,
    },
    /// `/images/pull`.
    ImagePulled {
        /// The image's canonical name.
        name: String,
        /// The digest the name points at.
        digest: String,
    },
    /// `/images/import`.
    ImageImported {
        /// The image's canonical name.
        name: String,
        /// The digest the name points at.
        digest: String,
    },
    /// `/images/delete`.
    ImageDeleted {
        /// The image's canonical name.
        name: String,
        /// The digest the name pointed at.
        digest: String,
    },
}

impl EventKind {
    /// The event's topic, a path such as `/containers/exit`.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::NamespaceCreated => "/namespaces/create",
            Self::NamespaceDeleted => "/namespaces/delete",
            Self::ContainerCreated { .. } => "/containers/create",
            Self::ContainerStarted { .. } => "/containers/start",
            Self::ContainerExited { .. } => "/containers/exit",
            Self::ContainerDeleted { .. } => "/containers/delete",
            Self::ContainerOom => "/containers/oom",
            Self::CellCreated { .. } => "/cells/create",
            Self::CellDeleted { .. } => "/cells/delete",
            Self::ImagePulled { .. } => "/images/pull",
            Self::ImageImported { .. } => "/images/import",
            Self::ImageDeleted { .. } => "/images/delete",
        }
    }
}

/// Something that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub time: SystemTime,
    /// The namespace it happened in; empty for images, whose references are global for now.
    pub namespace: String,
    /// The container's id for container events, else empty.
    pub container_id: String,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// An event of `kind` in `namespace`, now, about no container.
    pub fn new(namespace: &str, kind: EventKind) -> Self {
        Self {
            time: SystemTime::now(),
            namespace: namespace.to_owned(),
            container_id: String::new(),
            kind,
        }
    }

    /// An event of `kind` about container `id` of `namespace`, now.
    pub fn container(namespace: &str, id: &str, kind: EventKind) -> Self {
        Self {
            container_id: id.to_owned(),
            ..Self::new(namespace, kind)
        }
    }

    /// The event's topic.
    pub fn topic(&self) -> &'static str {
        self.kind.topic()
    }
}

/// Which events a subscriber wants; they combine: an event must match both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this namespace's events; `None`: every namespace.
    pub namespace: Option<String>,
    /// Only events whose topic starts with one of these; empty: every topic.
    pub topic_prefixes: Vec<String>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        let namespace = self
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == event.namespace);
        let topic = self.topic_prefixes.is_empty()
            || self
                .topic_prefixes
                .iter()
                .any(|prefix| event.topic().starts_with(prefix.as_str()));
        namespace && topic
    }
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscriptionError {
    /// The subscriber read too slowly and missed events.
    #[error("event subscriber too slow: {missed} events missed")]
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
    /// The engine has shut down.
    #[error("the event bus is closed")]
    Closed,
}

/// The publishing side, cheap to clone; every clone publishes to the same subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl EventBus {
    /// How many events a subscriber may fall behind before it is dropped.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A bus on which a subscriber may fall `capacity` events behind (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Publishes `event` to every subscriber; never waits.
    pub fn publish(&self, event: Event) {
        tracing::debug!(topic = event.topic(), namespace = %event.namespace,
            container_id = %event.container_id, "event");
        // No subscriber is not an error: nobody is listening.
        let _ = self.sender.send(event);
    }

    /// Events from now on that pass `filter`.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            filter,
        }
    }
}

/// One subscriber's stream of events.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    filter: EventFilter,
}

impl Subscription {
    /// The next event that passes the filter; an error ends the subscription.
    pub async fn next(&mut self) -> Result<Event, SubscriptionError> {
        loop {
            match self.receiver.recv().await {
                Ok(event) if self.filter.matches(&event) => return Ok(event),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(SubscriptionError::Lagged { missed })
                }
                Err(broadcast::error::RecvError::Closed) => return Err(SubscriptionError::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pulled(name: &str) -> Event {
        Event::new(
            "",
            EventKind::ImagePulled {
                name: name.into(),
                digest: "sha256:00".into(),
            },
        )
    }

    #[tokio::test]
    async fn filters_combine_namespace_and_topic_prefixes() {
        let bus = EventBus::default();
        let filter = EventFilter {
            namespace: Some("a".into()),
            topic_prefixes: vec!["/namespaces/".into()],
        };
        let mut sub = bus.subscribe(filter);
        bus.publish(Event::new("b", EventKind::NamespaceCreated));
        bus.publish(Event::container("a", "c1", EventKind::ContainerOom));
        bus.publish(Event::new("a", EventKind::NamespaceDeleted));
        let event = sub.next().await.unwrap();
        assert_eq!(event.namespace, "a");
        assert_eq!(event.topic(), "/namespaces/delete");
    }

    #[tokio::test]
    async fn a_subscriber_too_slow_is_ended_and_publishing_never_waits() {
        let bus = EventBus::new(2);
        let mut slow = bus.subscribe(EventFilter::default());
        for i in 0..5 {
            bus.publish(pulled(&format!("image{i}")));
        }
        assert_eq!(
            slow.next().await,
            Err(SubscriptionError::Lagged { missed: 3 })
        );
    }
}
