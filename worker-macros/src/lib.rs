//! The `#[task]` attribute macro (in progress: passes the function through).
use proc_macro::TokenStream;

/// Marks an async fn as a task.
#[proc_macro_attribute]
pub fn task(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
