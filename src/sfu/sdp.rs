//! Small rewrites of the SDP str0m writes.

/// Repeats the session's ICE candidates in every bundled m-section that lacks them.
///
/// str0m writes its candidate once, in the first m-section: correct for BUNDLE, but some stacks
/// (aiortc) read candidates from another section and never connect. Rejected sections (port 0)
/// are left alone.
pub(super) fn candidates_in_every_section(sdp: &str) -> String {
    let candidates: Vec<&str> =
        sdp.lines().filter(|l| l.starts_with("a=candidate:") || *l == "a=end-of-candidates").collect();
    if candidates.is_empty() {
        return sdp.to_string();
    }
    let mut out = String::with_capacity(sdp.len() + sdp.len() / 4);
    // (section has candidates, section is rejected)
    let mut section: Option<(bool, bool)> = None;
    let flush = |out: &mut String, section: Option<(bool, bool)>| {
        if let Some((false, false)) = section {
            for c in &candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
        }
    };
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            flush(&mut out, section);
            let rejected = m.split(' ').nth(1) == Some("0");
            section = Some((false, rejected));
        } else if line.starts_with("a=candidate:") {
            if let Some(s) = section.as_mut() {
                s.0 = true;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    flush(&mut out, section);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_section_carries_the_candidate() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
a=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\n";
        let out = candidates_in_every_section(sdp);
        let sections: Vec<&str> = out.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 3);
        for s in &sections[..2] {
            assert_eq!(s.matches("a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host").count(), 1, "{s}");
            assert!(s.contains("a=end-of-candidates"), "{s}");
        }
        assert!(!sections[2].contains("a=candidate"), "a rejected section stays bare");
    }
}
