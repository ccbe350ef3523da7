//! AMQP errors the broker raises: channel errors close a channel,
//! connection ("hard") errors close the connection.

/// An error reply: `channel.close` or, when `hard`, `connection.close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AmqpError {
    pub(crate) hard: bool,
    pub(crate) code: u16,
    pub(crate) text: String,
    pub(crate) class_id: u16,
    pub(crate) method_id: u16,
}

impl AmqpError {
    fn new(hard: bool, code: u16, name: &str, text: impl std::fmt::Display) -> AmqpError {
        AmqpError {
            hard,
            code,
            text: format!("{name} - {text}"),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method that failed.
    pub(crate) fn during(mut self, class_id: u16, method_id: u16) -> AmqpError {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    pub(crate) fn access_refused(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(false, 403, "ACCESS_REFUSED", text)
    }

    pub(crate) fn not_found(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(false, 404, "NOT_FOUND", text)
    }

    pub(crate) fn resource_locked(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(false, 405, "RESOURCE_LOCKED", text)
    }

    pub(crate) fn precondition(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(false, 406, "PRECONDITION_FAILED", text)
    }

    pub(crate) fn frame_error(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 501, "FRAME_ERROR", text)
    }

    pub(crate) fn command_invalid(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 503, "COMMAND_INVALID", text)
    }

    pub(crate) fn channel_error(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 504, "CHANNEL_ERROR", text)
    }

    pub(crate) fn unexpected_frame(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 505, "UNEXPECTED_FRAME", text)
    }

    pub(crate) fn not_allowed(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 530, "NOT_ALLOWED", text)
    }

    pub(crate) fn not_implemented(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 540, "NOT_IMPLEMENTED", text)
    }

    /// A connection closed by the broker's operator (`close_all_connections`).
    pub(crate) fn forced(text: impl std::fmt::Display) -> AmqpError {
        AmqpError::new(true, 320, "CONNECTION_FORCED", text)
    }
}

/// Short names for the text of NOT_FOUND errors.
pub(crate) fn no_queue(name: &str) -> AmqpError {
    AmqpError::not_found(format!("no queue '{name}' in vhost '/'"))
}

pub(crate) fn no_exchange(name: &str) -> AmqpError {
    AmqpError::not_found(format!("no exchange '{name}' in vhost '/'"))
}
