//! Generation of the task struct, its `Task` implementation and `enqueue`.
//!
//! The user's function is always emitted exactly as written, even when the
//! attribute or the signature is wrong: the errors are added next to it, so
//! that editors keep resolving the function and the rest of the crate.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, LitStr, PathArguments, ReturnType, Signature, Type,
};

use crate::attr::{
    self, Binding, ExchangeKind, OverflowKind, QueueKind, QueueOptions, RoutingKeys, TaskArgs,
    Unclassified,
};

/// Expands `#[task(attr)] item`.
pub(crate) fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (args, mut errors) = attr::check(&attr::parse(attr));

    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            errors.push(syn::Error::new(
                Span::call_site(),
                "#[task] goes on an `async fn`, as in `#[task(queue = \"emails\")] async fn send_email(email: Email) -> Result<(), TaskError>`",
            ));
            return with_errors(item, errors);
        }
    };

    match Handler::analyse(&func, args.type_name.as_ref()) {
        Ok(handler) => {
            // Options with errors were left out of `args`: generating the rest
            // keeps follow-on errors ("SendEmail not found") out of the way.
            let generated = generate(&func, &handler, &args);
            let mut out = item;
            out.extend(generated);
            with_errors(out, errors)
        }
        Err(signature_errors) => {
            errors.extend(signature_errors);
            with_errors(item, errors)
        }
    }
}

fn with_errors(mut tokens: TokenStream, errors: Vec<syn::Error>) -> TokenStream {
    tokens.extend(errors.into_iter().map(syn::Error::into_compile_error));
    tokens
}

/// What one argument of the handler receives.
enum Arg<'a> {
    /// `TaskContext`.
    Context,
    /// `State<T>`, with `T`.
    State(&'a Type),
    /// The message's payload.
    Payload,
}

/// The checked signature of the user's function.
struct Handler<'a> {
    /// One entry per argument, in order.
    args: Vec<Arg<'a>>,
    /// The payload type, if an argument takes one.
    payload: Option<&'a Type>,
    /// Where the error type `E` of `Result<T, E>` is written.
    error_span: Span,
    /// `T` of `Result<T, E>`, when it is not `()`: the value a caller gets.
    output: Option<&'a Type>,
    /// The struct's name.
    struct_ident: Ident,
}

impl<'a> Handler<'a> {
    /// Checks the signature; `type_name` is the checked `type_name` option.
    fn analyse(func: &'a ItemFn, type_name: Option<&Ident>) -> Result<Self, Vec<syn::Error>> {
        let sig = &func.sig;
        let mut errors = Vec::new();
        check_qualifiers(sig, &mut errors);

        let mut args = Vec::new();
        let mut payload: Option<&syn::PatType> = None;
        let mut context: Option<Span> = None;
        for input in &sig.inputs {
            let typed = match input {
                FnArg::Receiver(receiver) => {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        "#[task] goes on a free function, not a method: remove `self` and move the function out of the `impl` block",
                    ));
                    continue;
                }
                FnArg::Typed(typed) => typed,
            };
            match classify(&typed.ty) {
                Err(err) => errors.push(err),
                Ok(Arg::Context) => {
                    if context.is_some() {
                        errors.push(syn::Error::new_spanned(
                            typed,
                            "a #[task] function takes `TaskContext` at most once: remove this argument",
                        ));
                    }
                    context = Some(typed.span());
                    args.push(Arg::Context);
                }
                Ok(Arg::State(inner)) => args.push(Arg::State(inner)),
                Ok(Arg::Payload) => {
                    if let Some(first) = payload {
                        let msg = format!(
                            "a #[task] function takes at most one payload argument (besides `TaskContext` and `State<T>`), and `{}: {}` is already it: put both into one payload struct",
                            tokens_text(&first.pat),
                            tokens_text(&first.ty)
                        );
                        errors.push(syn::Error::new_spanned(typed, msg));
                    } else {
                        payload = Some(typed);
                    }
                    args.push(Arg::Payload);
                }
            }
        }

        let checked_output = check_output(sig).map_err(|e| errors.push(e)).ok();
        let struct_ident = match type_name {
            Some(given) => Some(given.clone()),
            None => struct_ident(&sig.ident).map_err(|e| errors.push(e)).ok(),
        };
        if let Some(ident) = &struct_ident {
            let given = type_name.is_some();
            let output = checked_output.and_then(|(_, output)| output);
            let named = [("payload", payload.map(|p| &*p.ty)), ("return", output)];
            for (what, ty) in named {
                if let Some(err) = ty.and_then(|ty| name_clash(&sig.ident, ident, given, what, ty))
                {
                    errors.push(err);
                }
            }
        }
        match (checked_output, struct_ident) {
            (Some((error_span, output)), Some(struct_ident)) if errors.is_empty() => Ok(Handler {
                args,
                payload: payload.map(|p| &*p.ty),
                error_span,
                output,
                struct_ident,
            }),
            _ => Err(errors),
        }
    }
}

/// Rejects `const`, `unsafe`, `extern`, variadics, generics and missing `async`.
fn check_qualifiers(sig: &Signature, errors: &mut Vec<syn::Error>) {
    if let Some(token) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            token,
            "#[task] functions cannot be `const`: remove `const`",
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[task] functions must be async: add `async` before `fn`",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            "#[task] functions cannot be `unsafe`: the worker calls them with no way to uphold their contract; make the function safe and use `unsafe` blocks inside",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[task] functions cannot have an ABI: remove the `extern`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "#[task] functions cannot be variadic",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[task] functions cannot be generic: a task has one concrete payload type and is registered once; remove the generic parameters",
        ));
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "#[task] functions cannot have a `where` clause: remove it",
        ));
    }
}

/// Strips the invisible groups and parentheses macros may put around a type.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// The last path segment of a plain path type (`a::b::C<D>` gives `C<D>`).
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match peel(ty) {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// Recognises `TaskContext` and `State<T>` by the last segment of their path.
fn classify(ty: &Type) -> syn::Result<Arg<'_>> {
    if let Some(segment) = last_segment(ty) {
        if segment.ident == "TaskContext" {
            if !segment.arguments.is_none() {
                return Err(syn::Error::new_spanned(
                    &segment.arguments,
                    "`TaskContext` takes no generic arguments",
                ));
            }
            return Ok(Arg::Context);
        }
        if segment.ident == "State" {
            if let PathArguments::AngleBracketed(generics) = &segment.arguments {
                if let [GenericArgument::Type(inner)] =
                    generics.args.iter().collect::<Vec<_>>().as_slice()
                {
                    return Ok(Arg::State(inner));
                }
            }
            return Err(syn::Error::new_spanned(
                ty,
                "`State` takes the type of the shared value: write `State<Db>`",
            ));
        }
        return Ok(Arg::Payload);
    }
    match peel(ty) {
        Type::Reference(reference) => {
            let msg = match classify(&reference.elem) {
                Ok(Arg::Context) => {
                    "take `TaskContext` by value, not by reference: it is cheap to clone".to_owned()
                }
                Ok(Arg::State(_)) => {
                    "take `State<T>` by value, not by reference: it is an `Arc` inside".to_owned()
                }
                _ => "the payload is deserialized afresh for each message, so it cannot be a reference: take an owned type (`String`, not `&str`)".to_owned(),
            };
            Err(syn::Error::new_spanned(ty, msg))
        }
        Type::ImplTrait(_) => Err(syn::Error::new_spanned(
            ty,
            "#[task] functions cannot be generic, and `impl Trait` arguments are generic: name a concrete type",
        )),
        _ => Ok(Arg::Payload),
    }
}

/// Accepts `Result<T, E>`, and aliases written `Result<T>` (such as
/// `io::Result<()>`); returns where `E` is written (the whole type for an
/// alias) and `T` unless it is `()`.
fn check_output<'a>(sig: &'a Signature) -> syn::Result<(Span, Option<&'a Type>)> {
    let hint = "#[task] functions must return `Result<T, E>`, where `T` is `()` or a value for callers that implements `Serialize`, and `E` converts into `TaskError` (any `std::error::Error` does)";
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        ReturnType::Default => {
            let span = sig.paren_token.span.close();
            let msg = format!("{hint}: add `-> Result<(), TaskError>` and end with `Ok(())`");
            return Err(syn::Error::new(span, msg));
        }
    };
    let error_type = last_segment(ty).and_then(|segment| {
        if segment.ident != "Result" {
            return None;
        }
        let PathArguments::AngleBracketed(generics) = &segment.arguments else {
            return None;
        };
        match generics.args.iter().collect::<Vec<_>>().as_slice() {
            [GenericArgument::Type(ok)] => Some((ok, None)),
            [GenericArgument::Type(ok), GenericArgument::Type(err)] => Some((ok, Some(err))),
            _ => None,
        }
    });
    let value = |ok: &'a Type| (!is_unit(ok)).then_some(ok);
    match error_type {
        Some((ok, Some(err))) => Ok((
            match last_segment(err) {
                Some(segment) => segment.ident.span(),
                None => err.span(),
            },
            value(ok),
        )),
        Some((ok, None)) => Ok((ty.span(), value(ok))),
        None => {
            let msg = format!("{hint}, found `{}`", tokens_text(ty));
            Err(syn::Error::new_spanned(ty, msg))
        }
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(peel(ty), Type::Tuple(t) if t.elems.is_empty())
}

/// Tokens as a person would write them: `Result<u64, E>`, not `Result < u64 , E >`.
fn tokens_text(tokens: &impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// `send_email` -> `SendEmail`.
pub(crate) fn pascal_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    for part in snake.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn struct_ident(fn_ident: &Ident) -> syn::Result<Ident> {
    let name = fn_ident.unraw().to_string();
    let pascal = pascal_case(&name);
    let valid = pascal
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && pascal != "Self";
    if !valid {
        let msg = format!("#[task] cannot make a struct name out of `{name}`: rename the function");
        return Err(syn::Error::new(fn_ident.span(), msg));
    }
    if pascal == name {
        let msg = format!(
            "#[task] names the task struct `{pascal}` after the function, so the function must not already be called that: name it in snake_case"
        );
        return Err(syn::Error::new(fn_ident.span(), msg));
    }
    Ok(Ident::new(&pascal, fn_ident.span()))
}

/// The payload type named in the function's own module (`Charge` or
/// `self::Charge`), if it is a single name: only such a path can clash with
/// the generated type, which is declared in that module.
fn local_type_name(ty: &Type) -> Option<&Ident> {
    let Type::Path(path) = peel(ty) else {
        return None;
    };
    let segments: Vec<_> = path.path.segments.iter().collect();
    let last = match (
        path.qself.is_some(),
        path.path.leading_colon,
        segments.as_slice(),
    ) {
        (false, None, [only]) => only,
        (false, None, [first, only]) if first.ident == "self" => only,
        _ => return None,
    };
    Some(&last.ident)
}

/// The generated type would be named like the payload type (`what` is
/// `payload`) or the return value's type (`return`): the user would
/// otherwise get four errors about a type defined twice (E0428, conflicting
/// derives, missing fields) that do not say why.
fn name_clash(
    fn_ident: &Ident,
    ident: &Ident,
    given: bool,
    what: &str,
    ty: &Type,
) -> Option<syn::Error> {
    let payload_name = local_type_name(ty)?;
    if payload_name.unraw() != ident.unraw() {
        return None;
    }
    let fn_name = fn_ident.unraw().to_string();
    let example = format!("{}Task", ident.unraw());
    Some(if given {
        syn::Error::new(
            ident.span(),
            format!(
                "`type_name` names the task type `{ident}`, like its {what} type `{payload_name}`: choose another name, for example `type_name = \"{example}\"`"
            ),
        )
    } else {
        syn::Error::new(
            fn_ident.span(),
            format!(
                "the task type generated for `{fn_name}` would be named `{ident}`, like its {what} type `{payload_name}`; rename the function (for example `{fn_name}_task`) or name the task type with `type_name = \"{example}\"`"
            ),
        )
    })
}

fn duration(d: Duration) -> TokenStream {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if millis % 1000 == 0 {
        let secs = Literal::u64_unsuffixed(millis / 1000);
        quote!(::core::time::Duration::from_secs(#secs))
    } else {
        let millis = Literal::u64_unsuffixed(millis);
        quote!(::core::time::Duration::from_millis(#millis))
    }
}

/// Statements that change `options` from its default.
fn option_statements(args: &TaskArgs, krate: &TokenStream) -> Vec<TokenStream> {
    let mut out = Vec::new();
    if let Some(n) = &args.max_attempts {
        let n = Literal::u32_unsuffixed(n.value);
        out.push(quote!(options.retry.max_attempts = #n;));
    }
    if let Some(n) = &args.in_process {
        let n = Literal::u32_unsuffixed(n.value);
        out.push(quote!(options.retry.in_process_attempts = #n;));
    }
    if let Some(backoff) = &args.backoff {
        let (min, max) = (duration(backoff.value.0), duration(backoff.value.1));
        out.push(quote!(options.retry.backoff.min = #min;));
        out.push(quote!(options.retry.backoff.max = #max;));
    }
    if let Some(tiers) = &args.tiers {
        let tiers = tiers.value.iter().map(|d| duration(*d));
        out.push(quote!(options.retry.tiers = ::std::vec::Vec::from([#(#tiers),*]);));
    }
    if let Some(timeout) = &args.timeout {
        let timeout = duration(timeout.value);
        out.push(quote!(options.timeout = ::core::option::Option::Some(#timeout);));
    }
    if let Some(rate) = &args.rate {
        let count = Literal::u32_unsuffixed(rate.value.0);
        let per = duration(rate.value.1);
        out.push(
            quote!(options.rate = ::core::option::Option::Some(#krate::Rate {
            count: #count,
            per: #per,
        });),
        );
    }
    if let Some(rule) = &args.breaker {
        let percent = Literal::u8_unsuffixed(rule.value.0);
        let window = Literal::u32_unsuffixed(rule.value.1);
        let cooldown = args.breaker_cooldown.as_ref().map(|c| {
            let c = duration(c.value);
            quote!(.cooldown(#c))
        });
        out.push(quote!(options.breaker = ::core::option::Option::Some(
            #krate::BreakerPolicy::share(#percent, #window)#cooldown
        );));
    }
    if let Some(n) = &args.prefetch {
        let n = Literal::u16_unsuffixed(n.value);
        out.push(quote!(options.prefetch = ::core::option::Option::Some(#n);));
    }
    if let Some(n) = &args.concurrency {
        let n = Literal::u64_unsuffixed(n.value);
        out.push(quote!(options.concurrency = #n;));
    }
    if let Some(kind) = &args.queue_type {
        let variant = match kind.value {
            QueueKind::Quorum => quote!(Quorum),
            QueueKind::Classic => quote!(Classic),
        };
        out.push(quote!(options.queue_type = #krate::QueueType::#variant;));
    }
    if let Some(kind) = &args.unclassified {
        let variant = match kind.value {
            Unclassified::Transient => quote!(Transient),
            Unclassified::Permanent => quote!(Permanent),
        };
        out.push(quote!(options.unclassified = #krate::FailureKind::#variant;));
    }
    if let Some(n) = &args.max_body {
        let n = Literal::u64_unsuffixed(n.value);
        out.push(quote!(options.max_body_bytes = #n;));
    }
    if let Some(binding) = &args.binding {
        let binding = binding_expr(binding, krate);
        out.push(quote!(options.binding = ::core::option::Option::Some(#binding);));
    }
    out.extend(queue_option_statements(&args.queue_options, krate));
    out
}

/// Statements for `priority`, the length limits, `overflow` and `message_ttl`.
fn queue_option_statements(q: &QueueOptions, krate: &TokenStream) -> Vec<TokenStream> {
    let some = |value: TokenStream| quote!(::core::option::Option::Some(#value));
    let mut out = Vec::new();
    if let Some(n) = &q.priority {
        let n = some(Literal::u8_unsuffixed(n.value).into_token_stream());
        out.push(quote!(options.priority = #n;));
    }
    if let Some(n) = &q.max_length {
        let n = some(Literal::u64_unsuffixed(n.value).into_token_stream());
        out.push(quote!(options.limits.max_length = #n;));
    }
    if let Some(n) = &q.max_length_bytes {
        let n = some(Literal::u64_unsuffixed(n.value).into_token_stream());
        out.push(quote!(options.limits.max_length_bytes = #n;));
    }
    if let Some(kind) = &q.overflow {
        let variant = match kind.value {
            OverflowKind::RejectPublish => quote!(RejectPublish),
            OverflowKind::DropHead => quote!(DropHead),
        };
        out.push(quote!(options.limits.overflow = #krate::Overflow::#variant;));
    }
    if let Some(ttl) = &q.message_ttl {
        let ttl = some(duration(ttl.value));
        out.push(quote!(options.limits.message_ttl = #ttl;));
    }
    out
}

fn binding_expr(binding: &Binding, krate: &TokenStream) -> TokenStream {
    let cow = |lit: &LitStr| quote!(::std::borrow::Cow::Borrowed(#lit));
    let exchange = cow(&binding.exchange);
    let kind = match binding.kind.value {
        ExchangeKind::Direct => quote!(Direct),
        ExchangeKind::Topic => quote!(Topic),
        ExchangeKind::Fanout => quote!(Fanout),
        ExchangeKind::Headers => quote!(Headers),
    };
    let routing_keys = match &binding.routing_keys {
        RoutingKeys::Given(keys) => {
            let keys = keys.iter().map(cow);
            quote!(::std::vec::Vec::from([#(#keys),*]))
        }
        RoutingKeys::QueueName => quote!(::std::vec::Vec::from([
            ::std::borrow::Cow::Borrowed(<Self as #krate::Task>::QUEUE)
        ])),
        RoutingKeys::None => quote!(::std::vec::Vec::new()),
    };
    let match_headers = if binding.match_headers.is_empty() {
        quote!(::std::vec::Vec::new())
    } else {
        let pairs = binding
            .match_headers
            .iter()
            .map(|(k, v)| (cow(k), cow(v)))
            .map(|(k, v)| quote!((#k, #v)));
        quote!(::std::vec::Vec::from([#(#pairs),*]))
    };
    let match_all = binding.match_all;
    quote!(#krate::ExchangeBinding {
        exchange: #exchange,
        kind: #krate::ExchangeKind::#kind,
        routing_keys: #routing_keys,
        match_headers: #match_headers,
        match_all: #match_all,
    })
}

fn generate(func: &ItemFn, handler: &Handler<'_>, args: &TaskArgs) -> TokenStream {
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::worker_core),
    };
    let vis = &func.vis;
    let fn_ident = &func.sig.ident;
    let fn_name = fn_ident.unraw().to_string();
    let ident = &handler.struct_ident;
    let cfgs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let user_docs = func.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let has_user_docs = func.attrs.iter().any(|a| a.path().is_ident("doc"));

    let name = match &args.name {
        Some(lit) => lit.to_token_stream(),
        None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name)),
    };
    let queue = match &args.queue {
        Some(lit) => lit.to_token_stream(),
        None => quote!(<Self as #krate::Task>::NAME),
    };
    let payload_ty = match handler.payload {
        Some(ty) => ty.to_token_stream(),
        None => quote!(()),
    };

    let options_fn = args.changes_options().then(|| {
        let statements = option_statements(args, &krate);
        quote! {
            fn options(&self) -> #krate::TaskOptions {
                let mut options = <#krate::TaskOptions as ::core::default::Default>::default();
                #(#statements)*
                options
            }
        }
    });

    // `every`/`missed`: the task's own periodic entry, with the payload's
    // `Default` (a missing `Default` is reported at the `every` literal).
    let declared = match (&args.every, &args.cron) {
        (Some(every), _) => {
            let period = duration(every.value);
            Some((
                every.span,
                quote!(#krate::schedule::Declared::Every(#period)),
            ))
        }
        (None, Some(cron)) => {
            let tz = match &args.tz {
                Some(tz) => quote!(::core::option::Option::Some(#tz)),
                None => quote!(::core::option::Option::None),
            };
            Some((
                cron.span(),
                quote!(#krate::schedule::Declared::Cron(#cron, #tz)),
            ))
        }
        (None, None) => None,
    };
    let periodic_fn = declared.map(|(span, when)| {
        let missed = match args.missed_skip.as_ref().map(|m| m.value) {
            Some(true) => quote!(#krate::schedule::Missed::Skip),
            _ => quote!(#krate::schedule::Missed::Fire),
        };
        let entry = quote_spanned! {span=>
            #krate::schedule::Periodic::declared::<Self>(#when, #missed)
        };
        quote! {
            fn periodic(&self) -> ::core::option::Option<#krate::schedule::Periodic> {
                #entry
            }
        }
    });

    let states: Vec<&Type> = handler
        .args
        .iter()
        .filter_map(|a| match a {
            Arg::State(ty) => Some(*ty),
            _ => None,
        })
        .collect();
    let required_state_fn = (!states.is_empty()).then(|| {
        quote! {
            fn required_state(&self) -> ::std::vec::Vec<(::core::any::TypeId, &'static str)> {
                ::std::vec::Vec::from([
                    #((::core::any::TypeId::of::<#states>(), ::core::stringify!(#states))),*
                ])
            }
        }
    });

    // The generated bindings have names no one gives an item: a unit struct
    // or a constant named like a binding would turn it into a pattern.
    let local = |name: &str| Ident::new(&format!("__task_{name}"), Span::call_site());
    let (ctx, payload) = (local("ctx"), local("payload"));
    // At the error type, like the conversion below.
    let error = Ident::new("__task_error", handler.error_span);
    let mut state_lets = Vec::new();
    let mut call_args = Vec::new();
    let mut uses_ctx = false;
    let mut uses_payload = false;
    for (i, arg) in handler.args.iter().enumerate() {
        match arg {
            Arg::Context => {
                uses_ctx = true;
                call_args.push(ctx.clone());
            }
            Arg::Payload => {
                uses_payload = true;
                call_args.push(payload.clone());
            }
            Arg::State(ty) => {
                uses_ctx = true;
                let var = local(&format!("state_{i}"));
                state_lets.push(quote! {
                    let ::core::option::Option::Some(#var) = #ctx.state::<#ty>() else {
                        return ::core::result::Result::Err(#krate::TaskError::permanent(::std::format!(
                            "task `{}` needs shared state `{}`, which the worker was not given: add it with Worker::state",
                            <Self as #krate::Task>::NAME,
                            ::core::stringify!(#ty),
                        )));
                    };
                });
                call_args.push(var);
            }
        }
    }
    // A returned value goes to the reply slot, which lives in the context:
    // the slot is taken before the context moves into the function.
    let reply = local("reply");
    let (take_slot, ok_arm) = match handler.output {
        Some(_) => {
            uses_ctx = true;
            let value = local("value");
            (
                Some(quote! {
                    let #reply = #krate::TaskContext::reply_slot(&#ctx).clone();
                }),
                quote!(::core::result::Result::Ok(#value) => #reply.set_output::<Self>(&#value),),
            )
        }
        None => (
            None,
            quote!(::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),),
        ),
    };
    let output_ty = match handler.output {
        Some(ty) => ty.to_token_stream(),
        None => quote!(()),
    };
    let ctx_param = if uses_ctx { ctx } else { local("unused_ctx") };
    let payload_param = if uses_payload {
        payload
    } else {
        local("unused_payload")
    };
    // Spanned at the error type, so that one that does not convert into
    // `TaskError` is reported there.
    let convert = quote_spanned! {handler.error_span=>
        ::core::convert::Into::<#krate::TaskError>::into(#error)
    };

    // The block is spanned at the function's name, so that a future that is
    // not `Send` is reported at the function rather than at the attribute.
    let body = quote_spanned! {fn_ident.span()=>
        async move {
            #take_slot
            #(#state_lets)*
            match #fn_ident(#(#call_args),*).await {
                #ok_arm
                ::core::result::Result::Err(#error) => ::core::result::Result::Err(#convert),
            }
        }
    };

    let future = quote_spanned! {fn_ident.span()=>
        impl ::core::future::Future<
            Output = ::core::result::Result<(), #krate::TaskError>,
        > + ::core::marker::Send
    };

    let struct_doc = format!(
        " The task that runs [`{fn_ident}`]; generated by `#[task]`.\n\n Register it with `Worker::register({ident})` and enqueue with [`{ident}::enqueue`]."
    );
    let user_doc_separator = has_user_docs.then(|| quote!(#[doc = ""]));
    let call_doc = format!(
        " Calls `{fn_name}` and awaits its reply (its `Ok` value) over direct reply-to; set a timeout with `.timeout(..)` before `.await`.\n\n # Errors\n\n A `CallError` when no reply came in time, the task failed for good or was parked, the request could not be sent, or the reply does not decode.",
    );
    let enqueue_doc = format!(
        " Enqueues one `{fn_name}` task and waits for the broker's confirm; returns the message id.\n\n # Errors\n\n When the payload cannot be encoded, the broker cannot be reached, or it does not confirm the message."
    );

    let enqueue_in_doc = format!(
        " Enqueues one `{fn_name}` task to run after `delay` (whole seconds, rounded up), held by the broker's delay ladder; waits for the confirm and returns the message id (see `Publisher::enqueue_in`)."
    );
    let enqueue_at_doc = format!(
        " Enqueues one `{fn_name}` task to run at `at`, like `enqueue_in` (see `Publisher::enqueue_at`)."
    );

    quote! {
        #(#cfgs)*
        #[doc = #struct_doc]
        #user_doc_separator
        #(#user_docs)*
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::default::Default
        )]
        #vis struct #ident;

        #(#cfgs)*
        impl #krate::Task for #ident {
            type Payload = #payload_ty;
            const NAME: &'static str = #name;
            const QUEUE: &'static str = #queue;

            #options_fn

            #periodic_fn

            #required_state_fn

            fn run(
                &self,
                #ctx_param: #krate::TaskContext,
                #payload_param: <Self as #krate::Task>::Payload,
            ) -> #future {
                #body
            }
        }

        #(#cfgs)*
        impl #krate::Callable for #ident {
            type Output = #output_ty;
        }

        #(#cfgs)*
        impl #ident {
            #[doc = #call_doc]
            #vis fn call<'__task_client>(
                client: &'__task_client #krate::RpcClient,
                payload: &#payload_ty,
            ) -> #krate::Call<'__task_client, Self> {
                #krate::Call::new(client, payload)
            }

            #[doc = #enqueue_doc]
            #vis async fn enqueue(
                publisher: &#krate::Publisher,
                payload: &#payload_ty,
            ) -> ::core::result::Result<::std::string::String, #krate::Error> {
                publisher.enqueue::<Self>(payload).await
            }

            #[doc = #enqueue_in_doc]
            #vis async fn enqueue_in(
                publisher: &#krate::Publisher,
                payload: &#payload_ty,
                delay: ::core::time::Duration,
            ) -> ::core::result::Result<::std::string::String, #krate::Error> {
                publisher.enqueue_in::<Self>(payload, delay).await
            }

            #[doc = #enqueue_at_doc]
            #vis async fn enqueue_at(
                publisher: &#krate::Publisher,
                payload: &#payload_ty,
                at: ::std::time::SystemTime,
            ) -> ::core::result::Result<::std::string::String, #krate::Error> {
                publisher.enqueue_at::<Self>(payload, at).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn expand(attr: TokenStream, item: TokenStream) -> String {
        task(attr, item).to_string()
    }

    fn analyse_errors(item: TokenStream) -> Vec<String> {
        let func: ItemFn = syn::parse2(item).unwrap();
        match Handler::analyse(&func, None) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn tokens_text_reads_like_source() {
        let ty: Type = syn::parse_quote!(std::result::Result<Vec<&'static str>, (u8, [u8; 4])>);
        assert_eq!(
            tokens_text(&ty),
            "std::result::Result<Vec<&'static str>, (u8, [u8; 4])>"
        );
    }

    #[test]
    fn pascal_case_joins_words() {
        assert_eq!(pascal_case("send_email"), "SendEmail");
        assert_eq!(pascal_case("_private_task"), "PrivateTask");
        assert_eq!(pascal_case("step_2"), "Step2");
        assert_eq!(pascal_case("resize"), "Resize");
        assert_eq!(pascal_case("already_Mixed"), "AlreadyMixed");
    }

    #[test]
    fn struct_name_follows_the_function() {
        let ident: Ident = syn::parse_str("r#type").unwrap();
        assert_eq!(struct_ident(&ident).unwrap(), "Type");
        let ident: Ident = syn::parse_str("Resize").unwrap();
        assert!(struct_ident(&ident).is_err());
        let ident: Ident = syn::parse_str("self_").unwrap();
        assert!(struct_ident(&ident).is_err());
    }

    #[test]
    fn recognises_arguments_by_their_last_segment() {
        let func: ItemFn = syn::parse_quote! {
            async fn f(a: worker_core::State<Db>, c: TaskContext, p: Email, s: State<Client>) -> Result<(), TaskError> { Ok(()) }
        };
        let handler = Handler::analyse(&func, None).unwrap();
        assert!(matches!(
            handler.args.as_slice(),
            [Arg::State(_), Arg::Context, Arg::Payload, Arg::State(_)]
        ));
        assert_eq!(
            handler.payload.unwrap().to_token_stream().to_string(),
            "Email"
        );
        assert_eq!(handler.struct_ident, "F");
    }

    #[test]
    fn a_returned_value_is_the_output() {
        let item = quote!(
            async fn quote(r: Req) -> Result<Price, TaskError> {
                todo!()
            }
        );
        let func: ItemFn = syn::parse2(item).unwrap();
        let handler = Handler::analyse(&func, None).unwrap_or_else(|_| panic!("rejected"));
        assert_eq!(tokens_text(&handler.output.unwrap()), "Price");
        let unit = quote!(
            async fn quote(r: Req) -> Result<(), TaskError> {
                Ok(())
            }
        );
        let func: ItemFn = syn::parse2(unit).unwrap();
        let handler = Handler::analyse(&func, None).unwrap_or_else(|_| panic!("rejected"));
        assert!(handler.output.is_none());
    }

    #[test]
    fn a_return_type_named_like_the_task_type_is_one_clear_error() {
        let item = quote!(
            async fn quote(r: Req) -> Result<Quote, TaskError> {
                todo!()
            }
        );
        let errors = analyse_errors(item);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("like its return type `Quote`"),
            "{errors:?}"
        );
    }

    #[test]
    fn accepts_result_aliases() {
        for output in [
            quote!(Result<u64, TaskError>),
            quote!(anyhow::Result<Quote>),
            quote!(Result<(), TaskError>),
            quote!(std::io::Result<()>),
            quote!(::core::result::Result<(), MyError>),
        ] {
            let item = quote!(async fn f(x: X) -> #output { Ok(()) });
            assert!(analyse_errors(item).is_empty(), "{output}");
        }
    }

    #[test]
    fn rejects_bad_signatures() {
        let cases = [
            (
                quote!(
                    fn f() -> Result<(), E> {
                        Ok(())
                    }
                ),
                "must be async",
            ),
            (
                quote!(
                    async fn f<T>(t: T) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    async fn f<'a>(t: &'a str) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    async fn f(&self) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "not a method",
            ),
            (
                quote!(
                    async fn f(a: A, b: B) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "`a: A` is already it",
            ),
            (
                quote!(
                    async fn f(a: A) {}
                ),
                "must return `Result<T, E>`",
            ),
            (
                quote!(
                    async fn f(a: A) -> u32 {
                        1
                    }
                ),
                "found `u32`",
            ),
            (
                quote!(
                    async fn f(a: A) -> Option<u32> {
                        Some(1)
                    }
                ),
                "found `Option<u32>`",
            ),
            (
                quote!(
                    async fn f(a: &str) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be a reference",
            ),
            (
                quote!(
                    async fn f(a: A) -> Result<(), E, F> {
                        Ok(())
                    }
                ),
                "found `Result<(), E, F>`",
            ),
            (
                quote!(
                    async fn f(c: &TaskContext) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "by value",
            ),
            (
                quote!(
                    async fn f(c: TaskContext, d: TaskContext) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "at most once",
            ),
            (
                quote!(
                    async fn f(s: State) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "`State<Db>`",
            ),
            (
                quote!(
                    async fn f(s: impl Sized) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "`impl Trait`",
            ),
            (
                quote!(
                    async unsafe fn f() -> Result<(), E> {
                        Ok(())
                    }
                ),
                "`unsafe`",
            ),
            (
                quote!(
                    async fn Resize() -> Result<(), E> {
                        Ok(())
                    }
                ),
                "snake_case",
            ),
        ];
        for (item, expected) in cases {
            let text = item.to_string();
            let errors = analyse_errors(item);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{text}: expected {expected:?} in {errors:?}"
            );
        }
    }

    #[test]
    fn keeps_the_function_and_adds_errors_when_the_signature_is_wrong() {
        let out = expand(
            quote!(queue = "q"),
            quote!(
                fn send(x: X) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.starts_with("fn send (x : X)"), "{out}");
        assert!(out.contains("compile_error"));
        assert!(!out.contains("struct"));
    }

    #[test]
    fn keeps_the_item_when_it_is_not_a_function() {
        let out = expand(
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert!(out.starts_with("struct S ;"), "{out}");
        assert!(out.contains("goes on an `async fn`"));
    }

    #[test]
    fn generates_struct_impl_and_enqueue() {
        let out = expand(
            quote!(queue = "emails", retries = 5),
            quote!(
                pub async fn send_email(ctx: TaskContext, email: Email) -> Result<(), TaskError> {
                    Ok(())
                }
            ),
        );
        assert!(out.starts_with("pub async fn send_email"), "{out}");
        assert!(out.contains("pub struct SendEmail ;"), "{out}");
        assert!(
            out.contains("impl :: worker_core :: Task for SendEmail"),
            "{out}"
        );
        assert!(out.contains("type Payload = Email ;"), "{out}");
        assert!(
            out.contains("const QUEUE : & 'static str = \"emails\" ;"),
            "{out}"
        );
        assert!(
            out.contains("options . retry . max_attempts = 6 ;"),
            "{out}"
        );
        assert!(out.contains("pub async fn enqueue"), "{out}");
        assert!(!out.contains("required_state"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn option_errors_still_generate_the_task() {
        let out = expand(
            quote!(queue = "emails", timeout = "soon"),
            quote!(
                async fn send_email(email: Email) -> Result<(), TaskError> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("struct SendEmail"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("options . timeout"), "{out}");
    }

    #[test]
    fn crate_option_changes_the_paths() {
        let out = expand(
            quote!(crate = "my_app::wc"),
            quote!(
                async fn ping() -> Result<(), TaskError> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("impl my_app :: wc :: Task for Ping"), "{out}");
        assert!(!out.contains(":: worker_core"), "{out}");
        assert!(out.contains("type Payload = () ;"), "{out}");
    }

    #[test]
    fn a_task_type_named_like_its_payload_is_one_clear_error() {
        let errors = analyse_errors(quote!(
            async fn charge(ctx: TaskContext, c: Charge) -> Result<(), TaskError> {
                Ok(())
            }
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("the task type generated for `charge` would be named `Charge`, like its payload type `Charge`"),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("type_name = \"ChargeTask\""),
            "{errors:?}"
        );
        // `self::Charge` is the same type; a path elsewhere is not.
        assert_eq!(
            analyse_errors(quote!(
                async fn charge(c: self::Charge) -> Result<(), TaskError> {
                    Ok(())
                }
            ))
            .len(),
            1
        );
        assert!(analyse_errors(quote!(
            async fn charge(c: models::Charge) -> Result<(), TaskError> {
                Ok(())
            }
        ))
        .is_empty());
    }

    #[test]
    fn type_name_names_the_generated_type() {
        let out = expand(
            quote!(queue = "billing", type_name = "ChargeTask"),
            quote!(
                async fn charge(c: Charge) -> Result<(), TaskError> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("struct ChargeTask ;"), "{out}");
        assert!(out.contains("type Payload = Charge ;"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");

        let out = expand(
            quote!(type_name = "Charge"),
            quote!(
                async fn charge(c: Charge) -> Result<(), TaskError> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains("`type_name` names the task type `Charge`"),
            "{out}"
        );
    }
}
